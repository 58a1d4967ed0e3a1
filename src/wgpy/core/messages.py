"""Wire formats of the four WireGuard messages (whitepaper 5.4.2-5.4.7).

Every message starts with a little-endian u32 whose low byte is the type and whose upper three
bytes are reserved zero. Parsers check type, reserved bytes and exact sizes and return either a
message or a `DropReason`; they never raise on network input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wgpy.constants import (
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    RESPONSE_SIZE,
    TRANSPORT_MIN_SIZE,
)
from wgpy.errors import DropReason

# initiation: type, sender, ephemeral[32], static[32+16], timestamp[12+16], mac1[16], mac2[16]
_INITIATION = struct.Struct("<II32s48s28s16s16s")
# response: type, sender, receiver, ephemeral[32], empty[0+16], mac1[16], mac2[16]
_RESPONSE = struct.Struct("<III32s16s16s16s")
# cookie reply: type, receiver, nonce[24], cookie[16+16]
_COOKIE_REPLY = struct.Struct("<II24s32s")
# transport header: type, receiver, counter
TRANSPORT_HEADER = struct.Struct("<IIQ")

assert _INITIATION.size == INITIATION_SIZE
assert _RESPONSE.size == RESPONSE_SIZE
assert _COOKIE_REPLY.size == COOKIE_REPLY_SIZE


@dataclass(frozen=True, slots=True)
class Initiation:
    sender_index: int
    ephemeral: bytes
    encrypted_static: bytes
    encrypted_timestamp: bytes
    mac1: bytes
    mac2: bytes

    def pack_without_macs(self) -> bytearray:
        return bytearray(
            _INITIATION.pack(
                MESSAGE_INITIATION, self.sender_index, self.ephemeral,
                self.encrypted_static, self.encrypted_timestamp, bytes(16), bytes(16),
            )
        )


@dataclass(frozen=True, slots=True)
class Response:
    sender_index: int
    receiver_index: int
    ephemeral: bytes
    encrypted_nothing: bytes
    mac1: bytes
    mac2: bytes

    def pack_without_macs(self) -> bytearray:
        return bytearray(
            _RESPONSE.pack(
                MESSAGE_RESPONSE, self.sender_index, self.receiver_index, self.ephemeral,
                self.encrypted_nothing, bytes(16), bytes(16),
            )
        )


@dataclass(frozen=True, slots=True)
class CookieReply:
    receiver_index: int
    nonce: bytes
    encrypted_cookie: bytes

    def pack(self) -> bytes:
        return _COOKIE_REPLY.pack(
            MESSAGE_COOKIE_REPLY, self.receiver_index, self.nonce, self.encrypted_cookie
        )


Message = Initiation | Response | CookieReply


def message_type(datagram: bytes) -> int | DropReason:
    """The type of a datagram after the framing checks every message shares."""
    n = len(datagram)
    if n < 4:
        return DropReason.EMPTY if n == 0 else DropReason.BAD_SIZE
    kind = datagram[0]
    if datagram[1] or datagram[2] or datagram[3]:
        return DropReason.BAD_RESERVED
    if kind == MESSAGE_TRANSPORT:
        return kind if n >= TRANSPORT_MIN_SIZE else DropReason.BAD_SIZE
    if kind == MESSAGE_INITIATION:
        return kind if n == INITIATION_SIZE else DropReason.BAD_SIZE
    if kind == MESSAGE_RESPONSE:
        return kind if n == RESPONSE_SIZE else DropReason.BAD_SIZE
    if kind == MESSAGE_COOKIE_REPLY:
        return kind if n == COOKIE_REPLY_SIZE else DropReason.BAD_SIZE
    return DropReason.UNKNOWN_TYPE


def parse_initiation(datagram: bytes) -> Initiation:
    """Caller has checked `message_type(datagram) == MESSAGE_INITIATION`."""
    _, sender, ephemeral, static, timestamp, mac1, mac2 = _INITIATION.unpack(datagram)
    return Initiation(sender, ephemeral, static, timestamp, mac1, mac2)


def parse_response(datagram: bytes) -> Response:
    _, sender, receiver, ephemeral, empty, mac1, mac2 = _RESPONSE.unpack(datagram)
    return Response(sender, receiver, ephemeral, empty, mac1, mac2)


def parse_cookie_reply(datagram: bytes) -> CookieReply:
    _, receiver, nonce, cookie = _COOKIE_REPLY.unpack(datagram)
    return CookieReply(receiver, nonce, cookie)
