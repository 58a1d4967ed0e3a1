"""mac1/mac2 and cookie replies: WireGuard's DoS mitigation (whitepaper 5.3, 5.4.4, 5.4.7).

Every handshake message ends with two 16-byte MACs:

    msg = ... || mac1 || mac2
    mac1 = MAC(HASH(LABEL_MAC1 || Spub_receiver), msg[:-32])
    mac2 = MAC(cookie, msg[:-16])          (zeros when the sender holds no fresh cookie)

mac1 proves the sender knows our public key, so it is checked for every handshake message and
costs one BLAKE2s. mac2 is only looked at when we are under load: it proves the sender can
receive at its claimed source address, because the cookie it is keyed with was sent there:

    cookie = MAC(Rm, source IP bytes || source UDP port)          (Rm: secret, renewed every 2 min)
    reply  = type 3 || reserved[3] || receiver index || nonce[24]
             || XAEAD(HASH(LABEL_COOKIE || Spub_receiver), nonce, cookie, AD = mac1 of the message)

Using the message's mac1 as AD ties a reply to the message that caused it, so a third party
cannot push cookies on a peer. Details taken from the kernel (cookie.c) where the two reference
implementations differ:

- the source port is hashed as 2 bytes big-endian (the kernel hashes the UDP header's __be16;
  wireguard-go hashes netip.AddrPort.MarshalBinary(), port little-endian). Only we ever verify
  our cookies, so either is interoperable; we follow the kernel;
- the sender uses a cookie for COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY = 115 s after
  receiving it (wireguard-go: 120 s), leaving slack for the receiver's 120 s secret rotation;
- once a reply has been consumed, another reply for the same mac1 is unexpected and refused
  (kernel: have_sent_mac1 = false), so replayed replies cannot refresh a cookie.

State as data: a CookieGenerator is `no mac1 sent` -> `mac1 sent, awaiting reply` ->
`cookie held (birth time)`; sending a new message goes back to `awaiting` (keeping the cookie).

sans-IO: times are passed in as `now`, randomness as `rng(n) -> n bytes`.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address
from typing import Protocol

from wgpy.constants import (
    COOKIE_LEN,
    COOKIE_REPLY_SIZE,
    COOKIE_SECRET_LATENCY,
    COOKIE_SECRET_MAX_AGE,
    LABEL_COOKIE,
    LABEL_MAC1,
    MAC_LEN,
    MESSAGE_COOKIE_REPLY,
    XNONCE_LEN,
)
from wgpy.core.crypto import HASH, MAC, CryptoError, xaead_decrypt, xaead_encrypt
from wgpy.model import Endpoint

Rng = Callable[[int], bytes]

_MACS_LEN = 2 * MAC_LEN
# type (u8), reserved (3 zero bytes), receiver index (u32 LE), nonce, encrypted cookie + tag
_COOKIE_REPLY = struct.Struct(f"<B3xI{XNONCE_LEN}s{COOKIE_LEN + 16}s")
assert _COOKIE_REPLY.size == COOKIE_REPLY_SIZE
_SECRET_LEN = 32
_ZERO_MAC = bytes(MAC_LEN)
_COOKIE_REPLY_TYPE = MESSAGE_COOKIE_REPLY.to_bytes(4, "little")  # type + zero reserved bytes


def mac1_key(public_key: bytes) -> bytes:
    """HASH(LABEL_MAC1 || Spub): the key of mac1 for messages sent to `public_key`."""
    return HASH(LABEL_MAC1 + public_key)


def cookie_key(public_key: bytes) -> bytes:
    """HASH(LABEL_COOKIE || Spub): the XAEAD key of cookie replies from `public_key`."""
    return HASH(LABEL_COOKIE + public_key)


def source_bytes(src: Endpoint) -> bytes:
    """What a cookie is keyed on: the IP address bytes then the UDP port, big-endian (kernel).

    An IPv4-mapped IPv6 address (from a dual-stack socket) counts as the IPv4 address, and an
    IPv6 zone ("%eth0") is dropped, so a client gets the same cookie whichever socket saw it."""
    host, port = src[0], src[1]  # (a third item, the local source, is not part of it)
    address = ip_address(host.split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.packed + port.to_bytes(2, "big")
    return address.packed + port.to_bytes(2, "big")


def _has_room_for_macs(msg: bytes | bytearray) -> bool:
    return len(msg) > _MACS_LEN


def mac2_missing(msg: bytes | bytearray) -> bool:
    """mac2 is zeros: the sender holds no cookie for us (whitepaper 5.4.4)."""
    return msg[-MAC_LEN:] == _ZERO_MAC


class CookieMacState(enum.Enum):
    """The verdict on a handshake message's MACs (kernel: enum cookie_mac_state)."""

    INVALID_MAC = "mac1 invalid"
    VALID_MAC_BUT_NO_COOKIE = "mac1 valid; mac2 missing, invalid or not asked for"
    VALID_MAC_WITH_COOKIE_BUT_RATELIMITED = "mac1 and mac2 valid; source over its rate limit"
    VALID_MAC_WITH_COOKIE = "mac1 and mac2 valid"


class SourceLimiter(Protocol):
    def allow(self, ip: str, now: float) -> bool: ...


class CookieChecker:
    """Receiving side of handshake messages: checks their MACs, makes cookie replies.

    Keyed by our own static public key; call `init` again whenever it changes."""

    __slots__ = ("_cookie_key", "_mac1_key", "_secret", "_secret_birth")

    def __init__(self) -> None:
        self._mac1_key: bytes | None = None
        self._cookie_key: bytes | None = None
        self._secret: bytes | None = None  # Rm, made on first use
        self._secret_birth = 0.0

    def init(self, local_public_key: bytes | None) -> None:
        """Precompute the keys of our public key (None: no identity, every mac1 fails)."""
        if local_public_key is None:
            self._mac1_key = self._cookie_key = None
        else:
            self._mac1_key = mac1_key(local_public_key)
            self._cookie_key = cookie_key(local_public_key)

    def check_mac1(self, msg: bytes | bytearray) -> bool:
        """Is mac1 of this whole handshake message right for our public key?"""
        if self._mac1_key is None or not _has_room_for_macs(msg):
            return False
        expected = MAC(self._mac1_key, bytes(msg[:-_MACS_LEN]))
        return hmac.compare_digest(expected, bytes(msg[-_MACS_LEN:-MAC_LEN]))

    def _current_secret(self, now: float, rng: Rng) -> bytes:
        # Rm changes every COOKIE_SECRET_MAX_AGE (kernel make_cookie: expired when
        # birth + 120 s <= now); cookies made with the previous secret stop matching.
        secret = self._secret
        if secret is None or now - self._secret_birth >= COOKIE_SECRET_MAX_AGE:
            secret = self._secret = rng(_SECRET_LEN)
            if len(secret) != _SECRET_LEN:
                raise ValueError("rng returned the wrong number of bytes")
            self._secret_birth = now
        return secret

    def _make_cookie(self, src: Endpoint, now: float, rng: Rng) -> bytes:
        return MAC(self._current_secret(now, rng), source_bytes(src))

    def check_mac2(self, msg: bytes | bytearray, src: Endpoint, now: float, rng: Rng) -> bool:
        """Does mac2 carry the cookie we would give `src` now? (Only asked when under load.)"""
        if not _has_room_for_macs(msg):
            return False
        expected = MAC(self._make_cookie(src, now, rng), bytes(msg[:-MAC_LEN]))
        return hmac.compare_digest(expected, bytes(msg[-MAC_LEN:]))

    def validate(
        self,
        msg: bytes | bytearray,
        src: Endpoint,
        now: float,
        rng: Rng,
        under_load: Callable[[], bool],
        rate_limiter: SourceLimiter,
    ) -> CookieMacState:
        """The MACs of a handshake message from `src`, in the kernel's order
        (wg_cookie_validate_packet): mac1; then, only when `under_load()` (asked once mac1 is
        valid, so that only messages that know our public key count as load), mac2; and only
        for a valid mac2 does the source's bucket in `rate_limiter` pay a token.

        That order is what keeps a spoofed source from locking a peer out: a sender that puts
        a peer's address on its messages never sees the cookie for that address (the reply
        goes to the peer), so its messages stop at mac2 and never empty the peer's bucket.
        A zero mac2 is "no cookie" without computing it (a valid one is zero with
        probability 2**-128)."""
        if not self.check_mac1(msg):
            return CookieMacState.INVALID_MAC
        if not under_load():
            return CookieMacState.VALID_MAC_BUT_NO_COOKIE
        if mac2_missing(msg) or not self.check_mac2(msg, src, now, rng):
            return CookieMacState.VALID_MAC_BUT_NO_COOKIE
        if not rate_limiter.allow(src[0], now):
            return CookieMacState.VALID_MAC_WITH_COOKIE_BUT_RATELIMITED
        return CookieMacState.VALID_MAC_WITH_COOKIE

    def create_reply(
        self, msg: bytes | bytearray, receiver_index: int, src: Endpoint, now: float, rng: Rng
    ) -> bytes:
        """The 64-byte cookie reply to a handshake message from `src` (whitepaper 5.4.7).

        `receiver_index` is the sender index of the message being answered."""
        if self._cookie_key is None:
            raise ValueError("no local public key: cannot make cookie replies")
        if not _has_room_for_macs(msg):
            raise ValueError("not a handshake message")
        cookie = self._make_cookie(src, now, rng)
        nonce = rng(XNONCE_LEN)
        if len(nonce) != XNONCE_LEN:
            raise ValueError("rng returned the wrong number of bytes")
        mac1 = bytes(msg[-_MACS_LEN:-MAC_LEN])
        encrypted_cookie = xaead_encrypt(self._cookie_key, nonce, cookie, mac1)
        return _COOKIE_REPLY.pack(MESSAGE_COOKIE_REPLY, receiver_index, nonce, encrypted_cookie)


class CookieGenerator:
    """Sending side, one per peer: adds mac1/mac2 to our handshake messages to that peer and
    takes the cookies it sends back. Keyed by the peer's static public key."""

    __slots__ = ("_cookie", "_cookie_birth", "_cookie_key", "_last_mac1_sent", "_mac1_key")

    def __init__(self, remote_public_key: bytes) -> None:
        self._mac1_key = mac1_key(remote_public_key)
        self._cookie_key = cookie_key(remote_public_key)
        self._last_mac1_sent: bytes | None = None  # None: no reply expected
        self._cookie: bytes | None = None
        self._cookie_birth = 0.0

    def _cookie_is_fresh(self, now: float) -> bool:
        # kernel: used while younger than COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY
        return now - self._cookie_birth < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY

    def add_macs(self, msg: bytearray, now: float) -> None:
        """Fill the last 32 bytes of a packed handshake message in place: mac1 always, mac2
        from a fresh cookie or zeros. Remembers mac1 to authenticate the answering reply."""
        if not _has_room_for_macs(msg):
            raise ValueError("not a handshake message")
        end_mac1 = len(msg) - MAC_LEN
        start_mac1 = end_mac1 - MAC_LEN
        mac1 = MAC(self._mac1_key, bytes(msg[:start_mac1]))
        msg[start_mac1:end_mac1] = mac1
        self._last_mac1_sent = mac1
        if self._cookie is not None and self._cookie_is_fresh(now):
            msg[end_mac1:] = MAC(self._cookie, bytes(msg[:end_mac1]))
        else:
            msg[end_mac1:] = _ZERO_MAC

    def consume_reply(self, reply: bytes | bytearray, now: float) -> bool:
        """Take the cookie out of a cookie reply (whitepaper 5.4.7). False, with nothing
        changed, if it is malformed, unexpected (no message of ours awaits one) or does not
        decrypt with our last mac1 as AD."""
        if len(reply) != COOKIE_REPLY_SIZE or bytes(reply[:4]) != _COOKIE_REPLY_TYPE:
            return False
        last_mac1 = self._last_mac1_sent
        if last_mac1 is None:
            return False
        _, _, nonce, encrypted_cookie = _COOKIE_REPLY.unpack(bytes(reply))
        try:
            cookie = xaead_decrypt(self._cookie_key, nonce, encrypted_cookie, last_mac1)
        except CryptoError:
            return False
        self._cookie = cookie
        self._cookie_birth = now
        self._last_mac1_sent = None  # one reply per message sent (kernel: have_sent_mac1)
        return True
