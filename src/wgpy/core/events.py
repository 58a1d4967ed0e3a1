"""What happened to a peer, for logs and monitoring: the core's third output.

The device keeps `Event`s in a bounded queue (the oldest fall off if nobody takes them, so an
untaken queue can never grow from the network); the IO layer takes them with
`Device.take_events()`, as it takes datagrams and packets.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from wgpy.core.peer import Peer


class EventKind(enum.Enum):
    HANDSHAKE_INITIATION_SENT = "sending handshake initiation"
    HANDSHAKE_RESPONSE_SENT = "received handshake initiation, sending response"
    SESSION_STARTED = "handshake complete, keypair derived"
    HANDSHAKE_GAVE_UP = "handshake did not complete after retrying, giving up"
    KEYS_ZEROED = "session keys zeroed"
    ENDPOINT_CHANGED = "endpoint changed (roaming)"


class Event(NamedTuple):
    kind: EventKind
    peer: Peer  # its repr shows a key fingerprint, never key material
    now: float


MAX_EVENTS = 1024
