"""Two devices in memory with a fake clock: handshake, transport, keys, roaming, routing."""

from __future__ import annotations

import ipaddress

import pytest
from pairlib import B_ENDPOINT, Pair, ipv4_packet, ipv6_packet, seeded_rng

from wgpy.constants import REJECT_AFTER_TIME, REKEY_AFTER_TIME
from wgpy.core import crypto
from wgpy.core.device import Device
from wgpy.errors import DropReason


def msg_type(datagram: bytes) -> int:
    return datagram[0]


def test_handshake_and_data_both_ways_v4():
    pair = Pair()
    sent = pair.a_sends(b"first")
    # initiation, response, then the staged packet
    kinds = [msg_type(d) for _, d in pair.wire]
    assert kinds[:2] == [1, 2]
    assert pair.b.received == [sent]
    back = pair.b_sends(b"reply")
    assert pair.a.received == [back]
    assert pair.peer_b.last_handshake == pair.now
    assert pair.peer_a.last_handshake == pair.now
    assert pair.peer_b.rx_bytes > 0 and pair.peer_b.tx_bytes > 0


def test_data_v6_inner():
    pair = Pair()
    packet = ipv6_packet("fd00:9::1", "fd00:9::2", b"six")
    pair.a.device.send_packet(packet, pair.now)
    pair.deliver()
    assert pair.b.received == [packet]
    reply = ipv6_packet("fd00:9::2", "fd00:9::1", b"xis")
    pair.b.device.send_packet(reply, pair.now)
    pair.deliver()
    assert pair.a.received == [reply]


def test_padding_to_16_and_trimmed_on_receive():
    pair = Pair()
    pair.a_sends(b"x")  # establish
    pair.wire.clear()
    packet = pair.a_sends(b"abc")  # 23-byte packet
    data = [d for _, d in pair.wire if d[0] == 4]
    assert len(data) == 1
    assert (len(data[0]) - 32) % 16 == 0 and len(data[0]) - 32 >= len(packet)
    assert pair.b.received[-1] == packet


def test_with_psk():
    psk = bytes(range(32))
    pair = Pair(psk=psk)
    sent = pair.a_sends()
    assert pair.b.received == [sent]


def test_psk_mismatch_gives_no_session():
    pair = Pair()
    pair.peer_b.set_preshared_key(b"\x01" * 32)
    pair.peer_a.set_preshared_key(b"\x02" * 32)
    pair.a_sends()
    assert pair.b.received == []
    assert pair.a.device.drops[DropReason.DECRYPT_HANDSHAKE] == 1
    assert pair.peer_b.keypairs.current is None


def test_wrong_public_key_gives_no_session():
    pair = Pair()
    # A believes B's key is some other key: its mac1 is keyed wrong for B
    bogus = crypto.generate_keypair(b"\x07" * 32)[1]
    device = pair.a.device
    device.remove_peer(pair.peer_b)
    other = device.add_peer(bogus)
    device.allowed_ips.insert(ipaddress.ip_network("10.9.0.2/32"), other)
    device.set_endpoint(other, B_ENDPOINT)
    pair.a_sends()
    assert pair.b.received == []
    assert pair.b.device.drops[DropReason.BAD_MAC1] == 1
    assert pair.peer_a.keypairs.next is None


def test_initiator_with_other_private_key_is_unknown():
    pair = Pair()
    pair.a.device.set_private_key(b"\x05" * 32)
    pair.a_sends()
    assert pair.b.device.drops[DropReason.UNKNOWN_PEER] == 1
    assert pair.peer_a.keypairs.all() == []


def test_unknown_initiator_dropped():
    pair = Pair()
    pair.b.device.remove_peer(pair.peer_a)
    pair.a_sends()
    assert pair.b.device.drops[DropReason.UNKNOWN_PEER] == 1


def test_responder_waits_for_confirmation_before_sending():
    pair = Pair()
    pair.drop = lambda direction, d: direction == "a->b" and d[0] == 4  # lose A's data
    pair.a_sends()
    # B has the session only as `next`, so it cannot send yet: its packet is staged
    assert pair.peer_a.keypairs.next is not None and pair.peer_a.keypairs.current is None
    pair.b.device.send_packet(ipv4_packet("10.9.0.2", "10.9.0.1", b"early"), pair.now)
    assert pair.peer_a.staged
    pair.drop = lambda direction, d: False
    pair.a_sends(b"confirm")
    assert pair.peer_a.keypairs.current is not None
    assert [p[20:] for p in pair.a.received] == [b"early"]


def test_replayed_data_dropped_and_reordered_accepted():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.wire.clear()
    pair.drop = lambda direction, d: True  # capture, don't deliver
    for i in range(5):
        pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2", bytes([i])), pair.now)
    pair.deliver()
    datagrams = [d for _, d in pair.wire if d[0] == 4]
    assert len(datagrams) == 5
    device = pair.b.device
    before = len(pair.b.received)
    for index in (3, 0, 4, 1, 2):  # reordered: all accepted
        device.receive_datagram(datagrams[index], pair.a.endpoint, pair.now)
    assert len(device.take_packets()) == 5
    for index in (0, 4):  # replays: dropped
        device.receive_datagram(datagrams[index], pair.a.endpoint, pair.now)
    assert device.take_packets() == []
    assert device.drops[DropReason.REPLAYED_COUNTER] == 2
    assert len(pair.b.received) == before


def test_replayed_packet_from_elsewhere_does_not_move_endpoint():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.wire.clear()
    pair.a_sends(b"data")
    datagram = [d for _, d in pair.wire if d[0] == 4][-1]
    pair.b.device.receive_datagram(datagram, ("203.0.113.66", 9999), pair.now)
    assert pair.peer_a.endpoint == pair.a.endpoint
    assert pair.b.device.drops[DropReason.REPLAYED_COUNTER] == 1


def test_tampered_packet_dropped_without_state_change():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.wire.clear()
    pair.drop = lambda direction, d: True
    pair.a_sends(b"data")
    datagram = bytearray([d for _, d in pair.wire if d[0] == 4][-1])
    datagram[-1] ^= 1
    rx = pair.peer_a.rx_bytes
    pair.b.device.receive_datagram(bytes(datagram), ("203.0.113.66", 9999), pair.now)
    assert pair.b.device.drops[DropReason.DECRYPT_DATA] == 1
    assert pair.peer_a.endpoint == pair.a.endpoint
    assert pair.peer_a.rx_bytes == rx


def test_roaming_follows_authenticated_source():
    pair = Pair()
    pair.a_sends(b"setup")
    new_endpoint = ("198.51.100.7", 40000)
    pair.a.endpoint = new_endpoint  # A's NAT mapping changed
    pair.a_sends(b"from new place")
    assert pair.peer_a.endpoint == new_endpoint
    reply = pair.b_sends(b"found you")
    assert pair.a.received[-1] == reply


def test_source_address_check():
    pair = Pair()
    pair.a_sends(b"setup")
    spoofed = ipv4_packet("10.9.0.77", "10.9.0.2", b"spoof")
    pair.a.device.send_packet(spoofed, pair.now)
    pair.deliver()
    assert spoofed not in pair.b.received
    assert pair.b.device.drops[DropReason.DISALLOWED_SOURCE] == 1


def test_no_route_and_bad_packets_counted():
    pair = Pair()
    device = pair.a.device
    device.send_packet(ipv4_packet("10.9.0.1", "10.99.0.1"), pair.now)
    device.send_packet(b"\x00" * 10, pair.now)
    assert device.drops[DropReason.NO_ROUTE] == 1
    assert device.drops[DropReason.BAD_OUTGOING_PACKET] == 1
    assert device.take_datagrams() == []


def test_three_peers_overlapping_prefixes():
    rng = seeded_rng(9)
    device = Device(rng=rng)
    device.set_private_key(crypto.generate_keypair(rng(32))[0])
    peers = []
    for i in range(3):
        peer = device.add_peer(crypto.generate_keypair(rng(32))[1])
        device.set_endpoint(peer, ("192.0.2.10", 1000 + i))
        peers.append(peer)
    device.allowed_ips.insert(ipaddress.ip_network("0.0.0.0/0"), peers[0])
    device.allowed_ips.insert(ipaddress.ip_network("10.0.0.0/8"), peers[1])
    device.allowed_ips.insert(ipaddress.ip_network("10.1.0.0/16"), peers[2])
    for dst, expected in (("8.8.8.8", 0), ("10.2.3.4", 1), ("10.1.2.3", 2)):
        device.send_packet(ipv4_packet("10.9.0.1", dst), 0.0)
        out = device.take_datagrams()
        assert len(out) == 1 and out[0][0][0] == 1  # an initiation
        assert out[0][1] == ("192.0.2.10", 1000 + expected)
        assert list(peers[expected].staged) == [ipv4_packet("10.9.0.1", dst)]


def test_peer_with_own_public_key_removed_on_key_set():
    rng = seeded_rng(3)
    private, public = crypto.generate_keypair(rng(32))
    device = Device(rng=rng)
    device.add_peer(public)
    device.set_private_key(private)
    assert public not in device.peers


@pytest.mark.parametrize("seconds", [REKEY_AFTER_TIME + 1])
def test_initiator_rekeys_after_rekey_time_without_loss(seconds):
    pair = Pair()
    pair.a_sends(b"setup")
    first = pair.peer_b.keypairs.current
    sent = []
    for second in range(int(seconds) + 60):
        pair.tick(1.0)
        sent.append(pair.a_sends(second.to_bytes(4, "big")))
        pair.b_sends(second.to_bytes(4, "big"))
    assert pair.peer_b.keypairs.current is not first
    # every packet arrived, in spite of the rotation
    assert pair.b.received[1:] == sent


def test_responder_does_not_rekey_on_time_but_initiator_does():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.wire.clear()
    pair.tick(REKEY_AFTER_TIME + 1)
    pair.b_sends(b"from responder")
    assert not any(d[0] == 1 for direction, d in pair.wire if direction == "b->a")
    pair.a_sends(b"from initiator")
    assert any(d[0] == 1 for direction, d in pair.wire if direction == "a->b")


def test_reject_after_time():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.drop = lambda direction, d: True
    pair.wire.clear()
    old = [d for _, d in pair.wire]
    pair.tick(REJECT_AFTER_TIME + 1)
    # a packet encrypted under the old key is now refused by the receiver
    keypair = pair.peer_b.keypairs.current
    assert keypair is not None
    pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2"), pair.now)
    out = pair.a.device.take_datagrams()
    assert [d[0] for d, _ in out] == [1]  # only a new initiation, the packet is staged
    assert old == []


def test_old_key_refused_on_receive_after_reject_time():
    pair = Pair()
    pair.a_sends(b"setup")
    pair.drop = lambda direction, d: True
    pair.wire.clear()
    pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2", b"late"), pair.now)
    pair.deliver()
    datagram = next(d for _, d in pair.wire if d[0] == 4)
    pair.clock.advance(REJECT_AFTER_TIME + 1)
    pair.b.device.receive_datagram(datagram, pair.a.endpoint, pair.now)
    assert pair.b.device.drops[DropReason.KEY_EXPIRED] == 1


def test_events_tell_the_story_of_a_handshake_and_a_roam():
    from wgpy.core.events import MAX_EVENTS, EventKind

    pair = Pair()
    pair.a_sends(b"hello")
    a_events = pair.a.device.take_events()
    b_events = [e.kind for e in pair.b.device.take_events()]
    assert [e.kind for e in a_events] == [EventKind.HANDSHAKE_INITIATION_SENT,
                                          EventKind.SESSION_STARTED]
    assert b_events == [EventKind.SESSION_STARTED, EventKind.HANDSHAKE_RESPONSE_SENT]
    assert all(e.peer is pair.peer_b for e in a_events)
    pair.a.endpoint = ("198.51.100.9", 1234)
    pair.a_sends(b"moved")
    assert [e.kind for e in pair.b.device.take_events()] == [EventKind.ENDPOINT_CHANGED]
    # bounded: nobody taking them cannot make them grow without limit
    for port in range(MAX_EVENTS + 10):
        pair.a.endpoint = ("198.51.100.9", 2000 + port)
        pair.a_sends(b"moved")
    assert len(pair.b.device.take_events()) == MAX_EVENTS


def test_staged_packets_follow_the_datagram_that_confirms_the_session():
    """The responder's staged packets leave when the initiator's first data confirms the
    session; if that datagram came from a new address, they go there (kernel
    wg_packet_consume_data_done: the endpoint is set before the staged packets are sent)."""
    pair = Pair(b_knows_a_endpoint=True)
    a, b = pair.a.device, pair.b.device
    a.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2", b"first"), pair.now)
    (initiation, _), = a.take_datagrams()
    b.receive_datagram(initiation, pair.a.endpoint, pair.now)
    (response, _), = b.take_datagrams()
    reply = ipv4_packet("10.9.0.2", "10.9.0.1", b"staged at the responder")
    b.send_packet(reply, pair.now)  # the session is not confirmed yet: staged
    # (its own initiation)
    assert [(d, e) for d, e in b.take_datagrams() if d[0] != 1] == []
    a.receive_datagram(response, pair.b.endpoint, pair.now)
    (data, _), = a.take_datagrams()  # A's staged "first" on the new session
    new_endpoint = ("198.51.100.7", 40000)  # A's NAT mapping changed meanwhile
    b.receive_datagram(data, new_endpoint, pair.now)
    sent = [(d, e) for d, e in b.take_datagrams() if d[0] == 4]
    assert sent and all(e == new_endpoint for _, e in sent), sent
