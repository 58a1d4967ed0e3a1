"""Many peers in the sans-IO core: routing and receiver-index lookups pick the right peer among
1,000, idle peers arm no timer, and handshakes with many initiators all complete.

Reduced versions of bench/scale.py and bench/handshakes.py (which print the timings); these
assert behaviour only.
"""

from __future__ import annotations

import random

from load_handshakes import core_rate, initiate, initiators
from load_scale import A_ADDRESS, A_ENDPOINT, B_ADDRESS, filler_networks, ipv4_packet, scaled_pair

from wgpy.core import crypto
from wgpy.core.device import Device

PEERS = 1000


def test_packets_reach_the_one_established_peer_among_a_thousand() -> None:
    a, b = scaled_pair(PEERS)
    assert len(a.peers) == len(b.peers) == PEERS
    assert len(b.indices) == PEERS  # one session + 999 pending handshakes
    for i in range(50):
        a.send_packet(ipv4_packet(A_ADDRESS, B_ADDRESS, 64 + i), 1.0)
    out = a.take_datagrams()
    assert {endpoint for _, endpoint in out} == {("192.0.2.2", 51821)}
    for datagram, _ in out:
        b.receive_datagram(datagram, A_ENDPOINT, 1.0)
    assert [len(p) for p in b.take_packets()] == [64 + i for i in range(50)]
    assert not b.drops


def test_each_destination_routes_to_its_own_peer_among_a_thousand() -> None:
    a, _ = scaled_pair(PEERS)
    chosen = random.Random(5).sample(range(PEERS - 1), 40)
    for i in chosen:
        a.send_packet(ipv4_packet(A_ADDRESS, str(filler_networks(i)[0].network_address), 64), 2.0)
    out = a.take_datagrams()
    # no session with the extra peers: each packet triggers an initiation to that peer's endpoint
    assert [endpoint for _, endpoint in out] == [("192.0.2.200", 1024 + i) for i in chosen]
    assert all(datagram[0] == 1 for datagram, _ in out)
    for i in chosen:
        v4, v6 = filler_networks(i)
        owner = a.allowed_ips.lookup_v4(v4.network_address.packed)
        assert owner is a.allowed_ips.lookup_v6(v6.network_address.packed)
        assert owner is not None and list(a.allowed_ips.entries_for(owner)) == [v4, v6]


def test_idle_peers_arm_no_timer() -> None:
    rng = random.Random(9).randbytes
    device = Device(rng=rng)
    device.set_private_key(crypto.generate_keypair(rng(32))[0])
    for i in range(PEERS):
        peer = device.add_peer(rng(32))
        device.allowed_ips.insert(filler_networks(i)[0], peer)
        device.set_endpoint(peer, ("192.0.2.200", 1024 + i))
    assert device.next_deadline() is None  # the IO loop sleeps until a packet arrives
    device.on_timer(1000.0)
    assert device.take_datagrams() == [] and device.next_deadline() is None


def test_keepalive_timers_fire_only_when_due() -> None:
    rng = random.Random(11).randbytes
    device = Device(rng=rng)
    device.set_private_key(crypto.generate_keypair(rng(32))[0])
    peers = []
    for i in range(200):
        peer = device.add_peer(rng(32))
        device.set_endpoint(peer, ("192.0.2.200", 1024 + i))
        peers.append(peer)
    # turning keepalive on sends one at once (no session yet: an initiation per peer)
    for i, peer in enumerate(peers):
        device.set_persistent_keepalive(peer, 25, float(i) / 100)
    assert len(device.take_datagrams()) == 200
    deadline = device.next_deadline()
    assert deadline is not None and deadline > 1.0
    device.on_timer(deadline - 0.001)
    assert device.take_datagrams() == []  # nothing is due before the earliest deadline


def test_handshakes_with_many_initiators_all_complete() -> None:
    result = core_rate(peers=60, rounds=2)  # raises unless every initiation is answered
    assert result.peers == 60 and result.responder_handshakes_per_second > 0


def test_prebuilt_initiations_carry_increasing_timestamps_per_peer() -> None:
    rng = random.Random(4).randbytes
    responder = Device(rng=rng)
    private, public = crypto.generate_keypair(rng(32))
    responder.set_private_key(private)
    responder.under_load.rate = 1 << 30
    devices = initiators(public, 5)
    for device in devices:
        responder.add_peer(device.public_key)  # type: ignore[arg-type]
    # built round-robin ahead of time, as the daemon benchmark does, then delivered in order
    messages = [initiate(d, i, k * 200.0) for k in (1, 2, 3) for i, d in enumerate(devices)]
    for n, message in enumerate(messages):
        responder.receive_datagram(message, ("10.0.0.2", 4000), 700.0 + n)
    out = responder.take_datagrams()
    kinds = [datagram[0] for datagram, _ in out]
    assert kinds == [2] * len(messages), dict(responder.drops)
    assert {endpoint for _, endpoint in out} == {("10.0.0.2", 4000)}
