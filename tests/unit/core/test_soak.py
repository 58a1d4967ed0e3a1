"""24 simulated hours of traffic both ways on the in-memory pair (issue 8: long uptimes)."""

from __future__ import annotations

import itertools

from pairlib import Pair

from wgpy.constants import REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_TIMEOUT

DAY = 24 * 3600.0


def test_a_day_of_traffic_rekeys_on_time_and_loses_nothing():
    pair = Pair(b_knows_a_endpoint=True)
    initiations: list[float] = []
    seen_keypairs = []

    def watch(direction: str, datagram: bytes) -> bool:
        if datagram[0] == 1:
            initiations.append(pair.now)
        return False

    pair.drop = watch
    sent_ab: list[bytes] = []
    sent_ba: list[bytes] = []
    start = pair.now
    step = 7.0  # both sides talk every 7 s
    sequence = 0
    while pair.now - start < DAY:
        sequence += 1
        sent_ab.append(pair.a_sends(sequence.to_bytes(4, "big")))
        sent_ba.append(pair.b_sends(sequence.to_bytes(4, "big")))
        for keypair in pair.peer_b.keypairs.all():
            if all(keypair is not seen for seen in seen_keypairs):
                seen_keypairs.append(keypair)
        pair.tick(step)

    # nothing lost across ~720 rekeys
    assert pair.b.received == sent_ab
    assert pair.a.received == sent_ba
    # a new session every REKEY_AFTER_TIME (+ at most one send interval), never later
    gaps = [b - a for a, b in itertools.pairwise(initiations)]
    assert len(initiations) >= DAY / (REKEY_AFTER_TIME + step) - 1
    assert all(REKEY_AFTER_TIME - 1e-6 <= gap <= REKEY_AFTER_TIME + step + REKEY_TIMEOUT
               for gap in gaps), sorted(gaps)[-3:]
    # old keys were zeroed on schedule: at most previous/current/next live, the rest invalid
    live = [k for k in seen_keypairs if k.valid]
    assert len(live) <= 3
    for keypair in seen_keypairs:
        if pair.now - keypair.created > REJECT_AFTER_TIME * 3 + 1:
            assert not keypair.valid
    # bounded state: the index tables hold only live sessions and at most one handshake
    assert len(pair.a.device.indices) <= 4 and len(pair.b.device.indices) <= 4
    assert len(pair.a.device.timers.queued()) < 50 and len(pair.b.device.timers.queued()) < 50
