"""Every protocol timer, driven by the fake clock."""

from __future__ import annotations

import itertools

from pairlib import Pair, ipv4_packet

from wgpy.constants import (
    KEEPALIVE_TIMEOUT,
    MAX_TIMER_HANDSHAKES,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    ZERO_KEYS_AFTER,
)
from wgpy.errors import DropReason


def times_of(pair: Pair, direction: str, kind: int, log: list) -> list[float]:
    return [t for t, d, k in log if d == direction and k == kind]


class Recorder:
    """Wraps pair.drop to log (time, direction, type, length) of every datagram."""

    def __init__(self, pair: Pair, lose=lambda direction, d: False) -> None:
        self.log: list[tuple[float, str, int, int]] = []
        self.pair = pair
        self.lose = lose
        pair.drop = self

    def __call__(self, direction: str, datagram: bytes) -> bool:
        self.log.append((self.pair.now, direction, datagram[0], len(datagram)))
        return self.lose(direction, datagram)

    def of(self, direction: str, kind: int, length: int | None = None) -> list[float]:
        return [
            t for t, d, k, n in self.log
            if d == direction and k == kind and (length is None or n == length)
        ]


def test_passive_keepalive_after_data_received():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.tick(30)  # let the keepalive answering "setup" go out
    rec = Recorder(pair)
    start = pair.now
    pair.a_sends(b"one-way data")
    pair.tick(KEEPALIVE_TIMEOUT + 1)
    keepalives = rec.of("b->a", 4, 32)
    assert keepalives == [start + KEEPALIVE_TIMEOUT]
    # and no more while nothing else happens
    pair.tick(30)
    assert rec.of("b->a", 4, 32) == keepalives


def test_second_keepalive_when_data_arrived_while_one_was_pending():
    # kernel: data received while the keepalive timer is pending asks for another one
    pair = Pair()
    pair.a_sends(b"setup")
    pair.tick(30)
    rec = Recorder(pair)
    start = pair.now
    pair.a_sends(b"one")
    pair.tick(1)
    pair.a_sends(b"two")
    pair.tick(30)
    assert rec.of("b->a", 4, 32) == [start + KEEPALIVE_TIMEOUT, start + 2 * KEEPALIVE_TIMEOUT]


def test_no_passive_keepalive_when_replying():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.tick(30)
    rec = Recorder(pair)
    pair.a_sends(b"q")
    pair.tick(2)
    pair.b_sends(b"answer")
    pair.tick(KEEPALIVE_TIMEOUT + 1)
    assert rec.of("b->a", 4, 32) == []


def test_persistent_keepalive_interval():
    pair = Pair(b_knows_a_endpoint=True)
    rec = Recorder(pair)
    start = pair.now
    pair.b.device.set_persistent_keepalive(pair.peer_a, 25, pair.now)
    pair.deliver()
    # turning it on sends at once: B has no session yet, so that is a handshake initiation
    assert rec.of("b->a", 1) == [start]
    pair.tick(80)
    keepalives = rec.of("b->a", 4, 32)
    assert keepalives, "no persistent keepalives"
    gaps = [b - a for a, b in itertools.pairwise(keepalives)]
    assert all(abs(gap - 25) < 1e-6 for gap in gaps)
    assert keepalives[0] - start <= 25 + 1e-6


def test_new_handshake_when_data_sent_and_nothing_heard():
    pair = Pair()
    pair.a_sends(b"setup")
    rec = Recorder(pair, lose=lambda direction, d: direction == "b->a")
    start = pair.now
    pair.a_sends(b"anyone there?")
    pair.tick(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + 1)
    initiations = rec.of("a->b", 1)
    assert len(initiations) == 1
    delay = initiations[0] - start
    assert KEEPALIVE_TIMEOUT + REKEY_TIMEOUT <= delay <= (
        KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX
    )


def test_retries_with_jitter_then_give_up():
    pair = Pair()
    rec = Recorder(pair, lose=lambda direction, d: True)  # B unreachable
    pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2"), pair.now)
    pair.deliver()
    pair.tick(200)
    initiations = rec.of("a->b", 1)
    # first attempt + MAX_TIMER_HANDSHAKES + 1 retries (kernel: attempts > MAX gives up)
    assert len(initiations) == MAX_TIMER_HANDSHAKES + 2
    gaps = [b - a for a, b in itertools.pairwise(initiations)]
    assert all(REKEY_TIMEOUT <= g <= REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX for g in gaps)
    assert len({round(g, 6) for g in gaps}) > 1, "no jitter"
    # given up: the staged packet was purged, and nothing more is sent
    assert not pair.peer_b.staged
    assert pair.a.device.drops[DropReason.HANDSHAKE_GAVE_UP] == 1
    pair.tick(100)
    assert len(rec.of("a->b", 1)) == MAX_TIMER_HANDSHAKES + 2


def test_initiations_rate_limited_to_one_per_rekey_timeout():
    pair = Pair()
    rec = Recorder(pair, lose=lambda direction, d: True)
    for _ in range(10):
        pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2"), pair.now)
        pair.clock.advance(0.1)
    pair.deliver()
    assert len(rec.of("a->b", 1)) == 1


def test_keys_zeroed_after_three_reject_times():
    pair = Pair()
    pair.a_sends(b"setup")
    assert pair.peer_b.keypairs.current is not None
    pair.tick(ZERO_KEYS_AFTER - 1)
    assert pair.peer_b.keypairs.current is not None
    pair.tick(2)
    assert pair.peer_b.keypairs.all() == []
    assert pair.peer_a.keypairs.all() == []
    # the indexes are released too
    assert not any(True for _ in pair.a.device.indices)


def test_last_minute_rekey_on_receive():
    pair = Pair()
    pair.a_sends(b"setup")
    rec = Recorder(pair)
    # only B talks; A (the initiator) must renew before REJECT_AFTER_TIME anyway
    start = pair.now
    while pair.now < start + REJECT_AFTER_TIME and not rec.of("a->b", 1):
        pair.tick(5)
        pair.b_sends(b"tick")
    renewals = rec.of("a->b", 1)
    assert renewals and renewals[0] - start < REJECT_AFTER_TIME
    # and the session never lapsed: everything B sent arrived
    assert len(pair.a.received) == len(rec.of("b->a", 4)) - len(rec.of("b->a", 4, 32))


def test_the_timer_heap_holds_one_live_entry_per_peer():
    """Deadlines cleared before they are due leave stale heap entries; popping one must not
    queue the peer a second time (it already has an entry at its earliest deadline), or a
    long-lived peer's entries multiply with every cancelled timer."""
    pair = Pair(b_knows_a_endpoint=True)
    pair.a_sends(b"setup")
    for _ in range(200):
        # B's data arms A's keepalive; A's answer cancels it: a stale entry each time
        pair.b_sends(b"data")
        pair.a_sends(b"answer")
        pair.tick(KEEPALIVE_TIMEOUT + 1)
    for device in (pair.a.device, pair.b.device):
        live = [deadline for deadline in device.timers.queued() if deadline >= pair.now]
        assert len(live) <= 2, sorted(live)
