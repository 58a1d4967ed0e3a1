"""The receive path under hostile input: cookies under load, fuzzing, malformed datagrams."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pairlib import Pair

from wgpy.errors import DropReason


def test_cookie_path_under_load():
    pair = Pair()
    pair.b.device.under_load.rate = 1  # every handshake message counts as load
    log = []
    pair.drop = lambda direction, d: log.append((pair.now, direction, d[0])) and False
    pair.a_sends(b"under load")
    # B answered with a cookie reply instead of doing DH work
    assert [(direction, kind) for _, direction, kind in log[:2]] == [("a->b", 1), ("b->a", 3)]
    assert pair.b.device.drops[DropReason.COOKIE_SENT] == 1
    assert pair.peer_a.keypairs.all() == []
    # A keeps the cookie; its retransmission carries mac2 and is accepted
    pair.tick(6)
    kinds = [(direction, kind) for _, direction, kind in log]
    assert ("b->a", 2) in kinds
    assert [p[20:] for p in pair.b.received] == [b"under load"]


def test_under_load_rate_limits_per_source_even_with_cookie():
    pair = Pair()
    device = pair.b.device
    device.under_load.rate = 1
    pair.a_sends()
    pair.tick(6)  # handshake done with a cookie
    assert pair.peer_a.keypairs.current is not None or pair.peer_a.keypairs.next is not None
    before = device.drops[DropReason.RATE_LIMITED]
    # hammer B with fresh initiations from A's address: the limiter cuts in
    for _ in range(50):
        pair.a.device.peers[pair.b.public_key].last_sent_handshake = None
        pair.a.device._send_initiation(pair.peer_b, pair.now, retry=False)
        pair.deliver()
    assert device.drops[DropReason.RATE_LIMITED] > before


def test_replayed_initiation_rejected():
    pair = Pair()
    captured = []
    pair.drop = lambda direction, d: captured.append(d) and False
    pair.a_sends()
    initiation = captured[0]
    assert initiation[0] == 1
    pair.clock.advance(1)
    pair.b.device.receive_datagram(initiation, pair.a.endpoint, pair.now)
    assert pair.b.device.drops[DropReason.REPLAYED_TIMESTAMP] == 1


def test_initiation_flood_from_one_peer_limited():
    pair = Pair()
    device_a, device_b = pair.a.device, pair.b.device
    initiations = []
    for i in range(3):
        pair.peer_b.last_sent_handshake = None
        pair.clock.advance(0.0175)  # past the 16.7 ms timestamp whitening, under 20 ms
        device_a._send_initiation(pair.peer_b, pair.now, retry=False)
        initiations.append(device_a.take_datagrams()[-1][0])
    for message in initiations:
        device_b.receive_datagram(message, pair.a.endpoint, pair.now)
    assert device_b.drops[DropReason.INITIATION_FLOOD] >= 1
    assert device_b.drops[DropReason.INITIATION_FLOOD] + device_b.drops[DropReason.REPLAYED_TIMESTAMP] == 2


def _snapshot(pair: Pair):
    def peer_state(peer):
        kp = peer.keypairs
        return (
            peer.endpoint, peer.rx_bytes, peer.tx_bytes, peer.last_handshake,
            tuple(id(k) for k in (kp.previous, kp.current, kp.next)),
            tuple(k.replay.snapshot() for k in kp.all()),
            peer.handshake.state, peer.handshake.latest_timestamp,
        )
    return peer_state(pair.peer_a), peer_state(pair.peer_b), len(pair.b.device.indices)


def _established() -> Pair:
    # deterministic: the same seeds give the same keys, indexes and datagrams every time
    pair = Pair()
    pair.a_sends(b"setup")
    pair.b_sends(b"setup-back")
    return pair


_CAPTURED: list[bytes] = [d for _, d in _established().wire]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.tuples(
            st.sampled_from(range(len(_CAPTURED))),
            st.lists(st.tuples(st.integers(0, 199), st.integers(1, 255)), min_size=1, max_size=4),
        ),
        st.tuples(st.sampled_from(range(len(_CAPTURED))), st.integers(0, 160)),
    )
)
def test_fuzz_receive_no_exception_no_state_change(case):
    pair = _established()
    assert [d for _, d in pair.wire] == _CAPTURED
    if isinstance(case, bytes):
        datagram = case
    elif isinstance(case[1], list):
        datagram = bytearray(_CAPTURED[case[0]])
        for position, flip in case[1]:
            if position < len(datagram):
                datagram[position] ^= flip
        datagram = bytes(datagram)
        if datagram in _CAPTURED:
            return
    else:
        datagram = _CAPTURED[case[0]][: case[1]]
        if datagram in _CAPTURED:
            return
    before = _snapshot(pair)
    total_before = sum(pair.b.device.drops.values())
    pair.b.device.receive_datagram(datagram, ("203.0.113.9", 4444), pair.now + 1)
    after = _snapshot(pair)
    assert pair.b.device.take_packets() == []
    # an unauthenticated datagram changes no state; it is counted as a drop (or answered
    # with a cookie, which is also counted)
    assert after == before
    assert sum(pair.b.device.drops.values()) == total_before + 1


def test_malformed_shapes_each_have_a_reason():
    pair = Pair()
    device = pair.b.device
    cases = {
        b"": DropReason.EMPTY,
        b"\x01\x00\x00": DropReason.BAD_SIZE,
        b"\x09\x00\x00\x00" + bytes(40): DropReason.UNKNOWN_TYPE,
        b"\x01\x01\x00\x00" + bytes(144): DropReason.BAD_RESERVED,
        b"\x01\x00\x00\x00" + bytes(100): DropReason.BAD_SIZE,
        b"\x04\x00\x00\x00" + bytes(28): DropReason.UNKNOWN_RECEIVER,
        b"\x04\x00\x00\x00" + bytes(10): DropReason.BAD_SIZE,
        b"\x01\x00\x00\x00" + bytes(144): DropReason.BAD_MAC1,
        b"\x03\x00\x00\x00" + bytes(60): DropReason.UNKNOWN_RECEIVER,
    }
    for datagram, reason in cases.items():
        before = device.drops[reason]
        device.receive_datagram(datagram, ("203.0.113.9", 1), pair.now)
        assert device.drops[reason] == before + 1, (datagram[:8], reason)
