"""Per-peer protocol timers (whitepaper 6.2-6.5; the kernel's timers.c, wireguard-go's timers.go).

Each timer is an absolute deadline or None, kept per peer in `PeerTimers`. `Timers` is the
device's one heap of (deadline, peer) entries and the eight hooks through which everything else
moves the deadlines; the device asks `next_deadline()` when to wake and takes what `expired(now)`
yields, so an idle peer costs nothing and 10,000 peers cost no scan. Heap entries are lazy: a
peer is pushed only when one of its deadlines moves earlier than the one it is already queued at.

    hook (Timers.)                        kernel / wireguard-go name                 effect
    data_sent                             wg_timers_data_sent / timersDataSent       arm new_handshake (15 s + jitter) unless armed
    data_received                         wg_timers_data_received                    arm send_keepalive (10 s) unless armed, else need another
    any_authenticated_packet_sent         wg_timers_any_authenticated_packet_sent    cancel send_keepalive
    any_authenticated_packet_received     wg_timers_any_authenticated_packet_received  cancel new_handshake
    any_authenticated_packet_traversal    wg_timers_any_authenticated_packet_traversal re-arm persistent_keepalive
    handshake_initiated                   wg_timers_handshake_initiated              arm retransmit (5 s + jitter)
    handshake_complete                    wg_timers_handshake_complete               cancel retransmit, attempts = 0
    session_derived                       wg_timers_session_derived                  arm zero_key_material (540 s)

The kernel calls the per-packet hooks once per packet; the device's batch paths call each once
per run of packets of one peer (what they do depends on `now` alone, so the outcome is the
same: `data_received` takes the run's count of data packets for its "need another" rule).

The keep-key-fresh rule (kernel: wg_packet_send_queued_handshake_initiation) never sends an
initiation itself: like the kernel, which queues it to its handshake worker, it arms
QUEUED_INITIATION at `now` and the initiation leaves from the device's timer step, after the
packets of the call that asked for it. A batch and the same packets one call at a time
therefore put the same datagrams on the wire in the same order.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from wgpy.constants import (
    KEEPALIVE_TIMEOUT,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    ZERO_KEYS_AFTER,
)

if TYPE_CHECKING:
    from wgpy.core.peer import Peer


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


# plain ints for the per-packet hooks (an IntEnum attribute lookup costs more)
_SEND_KEEPALIVE = int(Timer.SEND_KEEPALIVE)
_NEW_HANDSHAKE = int(Timer.NEW_HANDSHAKE)
_RETRANSMIT_HANDSHAKE = int(Timer.RETRANSMIT_HANDSHAKE)


class Timers:
    """The device's timer heap and the eight timer hooks (see the module docstring).

    `peers` is the device's own table: an entry of a peer that was removed is dropped when it
    comes up. `rng` gives the jitter of the retransmit and new-handshake deadlines."""

    __slots__ = ("_heap", "_peers", "_rng", "_seq")

    def __init__(self, peers: dict[bytes, Peer], rng: Callable[[int], bytes]) -> None:
        self._peers = peers
        self._rng = rng
        self._heap: list[tuple[float, int, Peer]] = []
        self._seq = 0

    # --- the heap

    def arm(self, peer: Peer, timer: int, deadline: float) -> None:
        timers = peer.timers
        timers.deadlines[timer] = deadline
        if deadline < timers.scheduled_at:
            timers.scheduled_at = deadline
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, peer))

    def jitter(self) -> float:
        return int.from_bytes(self._rng(2), "little") / 65536 * REKEY_TIMEOUT_JITTER_MAX

    def _is_live(self, deadline: float, peer: Peer) -> bool:
        """A peer's live entry is the one at `scheduled_at`; others are stale (a deadline that
        was cleared or moved: the peer stays queued by its live one), as are a removed peer's."""
        return deadline == peer.timers.scheduled_at and self._peers.get(peer.public_key) is peer

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, peer = heap[0]
            if self._is_live(deadline, peer):
                return deadline
            heapq.heappop(heap)
        return None

    def expired(self, now: float) -> Iterator[tuple[Peer, Timer]]:
        """The timers due at `now`, each cleared before it is yielded, a peer's in kernel
        order of precedence. What the caller arms meanwhile is queued as usual; a deadline
        it arms at or before `now` comes up in the same iteration."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, peer = heapq.heappop(heap)
            if not self._is_live(deadline, peer):
                continue
            timers = peer.timers
            timers.scheduled_at = _INF
            for timer in timers.due(now):
                yield peer, timer
            earliest = timers.earliest()
            if earliest is not None and earliest < timers.scheduled_at:
                timers.scheduled_at = earliest
                self._seq += 1
                heapq.heappush(heap, (earliest, self._seq, peer))

    def queued(self) -> list[float]:
        """The deadlines of the heap's entries, stale ones included (for tests)."""
        return [entry[0] for entry in self._heap]

    # --- the hooks

    def data_sent(self, peer: Peer, now: float) -> None:
        """Data (not a keepalive) went out: expect an answer within KEEPALIVE + REKEY_TIMEOUT,
        or start a new handshake (whitepaper 6.5)."""
        if peer.timers.deadlines[_NEW_HANDSHAKE] is None:
            self.arm(peer, _NEW_HANDSHAKE, now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + self.jitter())

    def data_received(self, peer: Peer, now: float, packets: int = 1) -> None:
        """`packets` data packets came in: answer with a keepalive unless data goes back
        first; one that arrives while the keepalive is pending asks for another after it."""
        timers = peer.timers
        if timers.deadlines[_SEND_KEEPALIVE] is None:
            self.arm(peer, _SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)
            packets -= 1
        if packets:
            timers.need_another_keepalive = True

    def any_authenticated_packet_sent(self, peer: Peer) -> None:
        """Anything authenticated went out: no keepalive is needed now."""
        peer.timers.deadlines[_SEND_KEEPALIVE] = None

    def any_authenticated_packet_received(self, peer: Peer) -> None:
        """Anything authenticated came in: the peer is alive, no new handshake is needed."""
        peer.timers.deadlines[_NEW_HANDSHAKE] = None

    def any_authenticated_packet_traversal(self, peer: Peer, now: float) -> None:
        """Anything authenticated went either way: the persistent keepalive starts over."""
        interval = peer.timers.persistent_keepalive
        if interval:
            self.arm(peer, Timer.PERSISTENT_KEEPALIVE, now + interval)

    def handshake_initiated(self, peer: Peer, now: float) -> None:
        """An initiation went out: retry it after REKEY_TIMEOUT + jitter."""
        self.arm(peer, _RETRANSMIT_HANDSHAKE, now + REKEY_TIMEOUT + self.jitter())

    def handshake_complete(self, peer: Peer, now: float) -> None:
        """A handshake completed (a response arrived, or data confirmed ours)."""
        timers = peer.timers
        timers.deadlines[_RETRANSMIT_HANDSHAKE] = None
        timers.handshake_attempts = 0
        timers.sent_lastminute_handshake = False
        peer.last_handshake = now

    def session_derived(self, peer: Peer, now: float) -> None:
        """New keys: all of the peer's keys are zeroed after REJECT_AFTER_TIME * 3 unless a
        newer session moves this on."""
        self.arm(peer, Timer.ZERO_KEY_MATERIAL, now + ZERO_KEYS_AFTER)
