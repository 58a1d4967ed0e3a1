"""Errors and drop reasons.

The network is hostile: nothing it sends raises. Every datagram or packet the device refuses is
counted under a `DropReason` in `Device.drops`. Exceptions are for our own misuse (bad
configuration handed to the core) and never carry key material.
"""

from __future__ import annotations

import enum


class DropReason(enum.Enum):
    # framing (messages.py)
    EMPTY = "empty datagram"
    UNKNOWN_TYPE = "unknown message type"
    BAD_SIZE = "wrong size for message type"
    BAD_RESERVED = "reserved bytes not zero"
    # handshake
    NO_PRIVATE_KEY = "device has no private key"
    BAD_MAC1 = "invalid mac1"
    BAD_MAC2 = "invalid mac2 under load"
    COOKIE_SENT = "under load: answered with a cookie reply"
    RATE_LIMITED = "handshake rate limited (source address)"
    DECRYPT_HANDSHAKE = "handshake failed to authenticate"
    UNKNOWN_PEER = "initiation from an unknown public key"
    REPLAYED_TIMESTAMP = "initiation timestamp not newer (replay)"
    INITIATION_FLOOD = "initiations from this peer too fast"
    UNEXPECTED_RESPONSE = "response for no pending initiation"
    BAD_COOKIE_REPLY = "cookie reply did not authenticate"
    # transport
    UNKNOWN_RECEIVER = "unknown receiver index"
    KEY_EXPIRED = "keypair expired"
    REPLAYED_COUNTER = "counter replayed or outside the window"
    DECRYPT_DATA = "data packet failed to authenticate"
    BAD_INNER_PACKET = "decrypted packet is not IPv4/IPv6"
    DISALLOWED_SOURCE = "inner source address not in the peer's AllowedIPs"
    # outgoing
    NO_ROUTE = "no peer for destination (AllowedIPs)"
    NO_ENDPOINT = "peer has no endpoint"
    BAD_OUTGOING_PACKET = "packet from the TUN is not IPv4/IPv6"
    STAGED_OVERFLOW = "staged queue full while waiting for a handshake"
    HANDSHAKE_GAVE_UP = "handshake never completed; staged packets purged"
    # io faults (counted by io/loop.py; the daemon goes on)
    TUN_READ_FAILED = "reading from the TUN failed (ENOMEM, ...)"
    TUN_WRITE_FAILED = "writing to the TUN failed (ENOBUFS, ENOMEM, EIO while down, ...)"


class WgError(Exception):
    """Misuse of the core by our own code (e.g. a key of the wrong length)."""
