"""The endpoint's local source (sticky source address) in the core: kept beside the remote
address, moved only by authenticated packets, carried back to the IO layer with every reply,
cleared by `wg set ... endpoint` and by a handshake retransmission (as the kernel does)."""

from __future__ import annotations

from pairlib import A_ENDPOINT, Pair, ipv4_packet

from wgpy.constants import REKEY_TIMEOUT
from wgpy.control.apply import device_state
from wgpy.core.cookie import source_bytes
from wgpy.core.events import EventKind
from wgpy.core.peer import forget_sources, remote_address
from wgpy.errors import DropReason
from wgpy.io.clock import wall_clock_of

SOURCE_1 = b"opaque-source-1"  # what the IO layer reports; the core never looks inside
SOURCE_2 = b"opaque-source-2"


def captured_transport(pair: Pair, payload: bytes) -> bytes:
    """A -> B transport datagram, captured instead of delivered."""
    pair.wire.clear()
    pair.drop = lambda direction, datagram: True
    pair.a_sends(payload)
    pair.drop = lambda direction, datagram: False
    return [d for _, d in pair.wire if d[0] == 4][-1]


def b_reply_endpoint(pair: Pair) -> tuple:
    device = pair.b.device
    device.send_packet(ipv4_packet("10.9.0.2", "10.9.0.1", b"reply"), pair.now)
    out = device.take_datagrams()
    assert len(out) == 1
    return out[0][1]


def test_source_is_learnt_from_authenticated_packets_and_replies_carry_it() -> None:
    pair = Pair()
    pair.a_sends(b"setup")
    device = pair.b.device
    first = captured_transport(pair, b"one")
    device.receive_datagram(first, (*A_ENDPOINT, SOURCE_1), pair.now)
    assert pair.peer_a.endpoint == (*A_ENDPOINT, SOURCE_1)
    assert b_reply_endpoint(pair) == (*A_ENDPOINT, SOURCE_1)
    # neither a replay nor a forgery moves it to another local address
    device.receive_datagram(first, (*A_ENDPOINT, SOURCE_2), pair.now)
    forged = bytearray(captured_transport(pair, b"two"))
    forged[-1] ^= 1
    device.receive_datagram(bytes(forged), (*A_ENDPOINT, SOURCE_2), pair.now)
    assert device.drops[DropReason.REPLAYED_COUNTER] == 1
    assert device.drops[DropReason.DECRYPT_DATA] == 1
    assert pair.peer_a.endpoint == (*A_ENDPOINT, SOURCE_1)
    # an authenticated packet to another local address does, as roaming
    device.take_events()
    device.receive_datagram(captured_transport(pair, b"three"), (*A_ENDPOINT, SOURCE_2),
                            pair.now)
    assert pair.peer_a.endpoint == (*A_ENDPOINT, SOURCE_2)
    assert [e.kind for e in device.take_events()] == [EventKind.ENDPOINT_CHANGED]
    assert b_reply_endpoint(pair) == (*A_ENDPOINT, SOURCE_2)
    # the operator's view has no source; the cookie of a source is that of its address
    assert device_state(device, wall_clock_of).peers[0].endpoint == A_ENDPOINT
    assert remote_address((*A_ENDPOINT, SOURCE_2)) == A_ENDPOINT
    assert source_bytes((*A_ENDPOINT, SOURCE_2)) == source_bytes(A_ENDPOINT)


def test_handshake_from_a_source_is_answered_from_it() -> None:
    pair = Pair()
    pair.drop = lambda direction, datagram: True
    pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2"), pair.now)
    pair.deliver()
    initiation = next(d for _, d in pair.wire if d[0] == 1)
    device = pair.b.device
    device.receive_datagram(initiation, (*A_ENDPOINT, SOURCE_1), pair.now)
    (response, endpoint), = device.take_datagrams()
    assert response[0] == 2 and endpoint == (*A_ENDPOINT, SOURCE_1)


def test_wg_set_endpoint_clears_the_source() -> None:
    pair = Pair()
    pair.a_sends(b"setup")
    pair.b.device.receive_datagram(captured_transport(pair, b"one"), (*A_ENDPOINT, SOURCE_1),
                                   pair.now)
    pair.b.device.set_endpoint(pair.peer_a, A_ENDPOINT)  # the same address, set by hand
    assert pair.peer_a.endpoint == A_ENDPOINT
    assert b_reply_endpoint(pair) == A_ENDPOINT


def test_a_handshake_retransmission_forgets_the_source() -> None:
    pair = Pair(a_knows_b_endpoint=False)
    pair.drop = lambda direction, datagram: True  # nothing gets through
    pair.peer_a.endpoint = (*A_ENDPOINT, SOURCE_1)  # learnt earlier
    device = pair.b.device
    device.send_packet(ipv4_packet("10.9.0.2", "10.9.0.1"), pair.now)
    (initiation, endpoint), = device.take_datagrams()
    assert initiation[0] == 1 and endpoint == (*A_ENDPOINT, SOURCE_1)
    pair.clock.advance(REKEY_TIMEOUT + 0.5)
    device.on_timer(pair.now)
    (retry, endpoint), = device.take_datagrams()
    # the kernel clears the cached source in case it is why nobody answers
    assert retry[0] == 1 and endpoint == A_ENDPOINT
    assert pair.peer_a.endpoint == A_ENDPOINT


def test_forget_sources_touches_only_sourced_endpoints_it_is_told_to() -> None:
    pair = Pair()
    pair.peer_a.endpoint = (*A_ENDPOINT, SOURCE_1)
    assert forget_sources([pair.peer_a, pair.peer_b], lambda e: e[2] == SOURCE_2) == 0
    assert pair.peer_a.endpoint == (*A_ENDPOINT, SOURCE_1)
    assert forget_sources([pair.peer_a, pair.peer_b], lambda e: e[2] == SOURCE_1) == 1
    assert pair.peer_a.endpoint == A_ENDPOINT
