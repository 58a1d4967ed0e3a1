"""Per-peer protocol timers (whitepaper 6.2-6.5; the kernel's timers.c).

Each timer is an absolute deadline or None. Hot-path events only write deadlines; the device
keeps one heap of (deadline, peer) entries and is woken by `Device.next_deadline()`, so an idle
peer costs nothing and 10,000 peers cost no scan. Heap entries are lazy: a peer is pushed only
when one of its deadlines moves earlier than the one it is already queued at.

    event                           kernel name                                   effect
    data packet sent                wg_timers_data_sent                           arm new_handshake (15 s + jitter) unless armed
    data packet received            wg_timers_data_received                       arm send_keepalive (10 s) unless armed, else need another
    any authenticated packet sent   wg_timers_any_authenticated_packet_sent       cancel send_keepalive
    any authenticated packet recv   wg_timers_any_authenticated_packet_received   cancel new_handshake
    any authenticated traversal     wg_timers_any_authenticated_packet_traversal  re-arm persistent_keepalive
    initiation sent                 wg_timers_handshake_initiated                 arm retransmit (5 s + jitter)
    handshake complete              wg_timers_handshake_complete                  cancel retransmit, attempts = 0
    session derived                 wg_timers_session_derived                     arm zero_key_material (540 s)
    keep key fresh (send, receive)  wg_packet_send_queued_handshake_initiation    arm queued_initiation (now)

The keep-key-fresh rule never sends an initiation itself: like the kernel, which queues it to
its handshake worker, it arms QUEUED_INITIATION at `now` and the initiation leaves from the
device's timer step, after the packets of the call that asked for it. A batch and the same
packets one call at a time therefore put the same datagrams on the wire in the same order.
"""

from __future__ import annotations

import enum

from wgpy.constants import (
    KEEPALIVE_TIMEOUT,
    REKEY_TIMEOUT,
    ZERO_KEYS_AFTER,
)


class Timer(enum.IntEnum):
    RETRANSMIT_HANDSHAKE = 0
    SEND_KEEPALIVE = 1
    NEW_HANDSHAKE = 2
    ZERO_KEY_MATERIAL = 3
    PERSISTENT_KEEPALIVE = 4
    QUEUED_INITIATION = 5


_INF = float("inf")


class PeerTimers:
    __slots__ = (
        "deadlines",
        "handshake_attempts",
        "need_another_keepalive",
        "persistent_keepalive",
        "scheduled_at",
        "sent_lastminute_handshake",
    )

    def __init__(self) -> None:
        self.deadlines: list[float | None] = [None] * len(Timer)
        self.handshake_attempts = 0
        self.need_another_keepalive = False
        self.sent_lastminute_handshake = False
        # the earliest deadline this peer is queued at in the device heap (inf: not queued)
        self.scheduled_at = _INF
        self.persistent_keepalive = 0

    def earliest(self) -> float | None:
        present = [d for d in self.deadlines if d is not None]
        return min(present) if present else None

    def due(self, now: float) -> list[Timer]:
        """Timers whose deadline passed, each cleared; in kernel order of precedence."""
        fired = []
        for timer in Timer:
            deadline = self.deadlines[timer]
            if deadline is not None and deadline <= now:
                self.deadlines[timer] = None
                fired.append(timer)
        return fired

    def cancel_all(self) -> None:
        self.deadlines = [None] * len(Timer)
        self.need_another_keepalive = False


def keepalive_deadline(now: float) -> float:
    return now + KEEPALIVE_TIMEOUT


def new_handshake_deadline(now: float, jitter: float) -> float:
    return now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter


def retransmit_deadline(now: float, jitter: float) -> float:
    return now + REKEY_TIMEOUT + jitter


def zero_keys_deadline(now: float) -> float:
    return now + ZERO_KEYS_AFTER
