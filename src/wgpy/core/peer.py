"""A peer: its configuration, handshake record, keypairs, timers, staged packets and counters."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from wgpy.constants import MAX_STAGED_PACKETS
from wgpy.core.cookie import CookieGenerator
from wgpy.core.keypair import Keypairs
from wgpy.core.noise import ZERO_KEY, Handshake
from wgpy.core.timers import PeerTimers
from wgpy.model import Endpoint


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

    def forget_source(self) -> None:
        """Send from the routing's choice of local address until the next authenticated datagram
        (kernel: wg_socket_clear_peer_endpoint_src)."""
        endpoint = self.endpoint
        if endpoint is not None and len(endpoint) > 2:
            self.endpoint = (endpoint[0], endpoint[1])

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


def remote_address(endpoint: Endpoint) -> tuple[str, int]:
    """The (host, port) of an endpoint, without the local source the IO layer may have added."""
    return (endpoint[0], endpoint[1]) if len(endpoint) > 2 else endpoint  # type: ignore[return-value]


def forget_sources(peers: Iterable[Peer], stale: Callable[[Endpoint], bool]) -> int:
    """`forget_source` for every peer whose endpoint has a source and `stale(endpoint)` says it
    no longer works (the address left the host, the route moved); returns how many."""
    forgotten = 0
    for peer in peers:
        endpoint = peer.endpoint
        if endpoint is not None and len(endpoint) > 2 and stale(endpoint):
            peer.endpoint = (endpoint[0], endpoint[1])
            forgotten += 1
    return forgotten
