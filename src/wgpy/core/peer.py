"""A peer: its configuration, handshake record, keypairs, timers, staged packets and counters."""

from __future__ import annotations

from collections import deque

from wgpy.constants import MAX_STAGED_PACKETS
from wgpy.core.cookie import CookieGenerator
from wgpy.core.keypair import Keypairs
from wgpy.core.noise import ZERO_KEY, Handshake
from wgpy.core.timers import PeerTimers

Endpoint = tuple[str, int]


class Peer:
    __slots__ = (
        "__weakref__",
        "cookie_generator",
        "endpoint",
        "handshake",
        "handshake_index",
        "keypairs",
        "last_handshake",
        "last_sent_handshake",
        "protocol_version",
        "public_key",
        "rx_bytes",
        "staged",
        "timers",
        "tx_bytes",
    )

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.handshake = Handshake(remote_static=public_key)
        self.keypairs = Keypairs()
        self.timers = PeerTimers()
        self.cookie_generator = CookieGenerator(public_key)
        self.endpoint: Endpoint | None = None
        # packets waiting for a session; like the kernel, the oldest is dropped when full
        self.staged: deque[bytes] = deque(maxlen=MAX_STAGED_PACKETS)
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_handshake: float | None = None  # `now` of the last completed handshake
        self.last_sent_handshake: float | None = None
        self.handshake_index = 0  # our index of the pending handshake, 0 = none
        self.protocol_version = 1

    @property
    def preshared_key(self) -> bytes:
        return self.handshake.preshared_key

    def set_preshared_key(self, psk: bytes) -> None:
        if len(psk) != 32:
            raise ValueError("a preshared key is 32 bytes")
        self.handshake.preshared_key = psk

    @property
    def has_preshared_key(self) -> bool:
        return self.handshake.preshared_key != ZERO_KEY

    @property
    def persistent_keepalive(self) -> int:
        return self.timers.persistent_keepalive

    def __repr__(self) -> str:  # never print keys: a short fingerprint only
        return f"<Peer {self.public_key[:4].hex()}…>"
