"""Two real Devices, each driven by its own DeviceLoop, over the in-memory TUN and network.

The loop code is the daemon's; only the fds are fakes. Time is scripted (a fake monotonic
clock), so timer behaviour is exact and the tests need no root and no sleeping.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import struct

import pytest

from wgpy.core.device import Device
from wgpy.errors import DropReason
from wgpy.io.loop import DeviceLoop
from wgpy.io.memory import MemoryNetwork, MemoryTun, MemoryUdp
from wgpy.keys import generate_private_key


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def ipv4_packet(src: str, dst: str, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header + payload


class Side:
    def __init__(self, network: MemoryNetwork, host: str, port: int, clock: Clock) -> None:
        self.device = Device(rng=secrets.token_bytes)
        self.device.set_private_key(generate_private_key())
        self.udp = MemoryUdp(network, host)
        self.device.listen_port = self.udp.open(port)
        self.tun = MemoryTun()
        self.loop = DeviceLoop(self.device, self.tun, self.udp, clock=clock)


@pytest.fixture
def pair():
    clock = Clock()
    network = MemoryNetwork()
    a = Side(network, "192.0.2.1", 51820, clock)
    b = Side(network, "192.0.2.2", 51821, clock)
    peer_b = a.device.add_peer(b.device.public_key)
    a.device.set_endpoint(peer_b, ("192.0.2.2", 51821))
    a.device.allowed_ips.insert(ipaddress.ip_network("10.0.0.2/32"), peer_b)
    peer_a = b.device.add_peer(a.device.public_key)
    b.device.allowed_ips.insert(ipaddress.ip_network("10.0.0.1/32"), peer_a)
    yield a, b, network, clock
    for side in (a, b):
        side.loop.close()


def run(sides, clock: Clock, seconds: float = 0.0, step: float = 0.1) -> None:
    """Let both loops handle everything pending, advancing the fake clock by `seconds`."""
    end = clock.now + seconds
    def pending() -> bool:
        return any(side.tun.to_device or any(sock.queue for sock in side.udp.sockets())
                   for side in sides)

    while True:
        for _ in range(1000):
            for side in sides:
                side.loop.run_once(max_wait=0)
            if not pending():
                break
        if clock.now >= end:
            return
        clock.now = min(end, clock.now + step)


def test_packets_cross_both_ways_after_a_handshake(pair) -> None:
    a, b, _network, clock = pair
    to_b = ipv4_packet("10.0.0.1", "10.0.0.2", b"ping")
    a.tun.inject(to_b)
    run((a, b), clock)
    assert b.tun.take_written() == [to_b]
    to_a = ipv4_packet("10.0.0.2", "10.0.0.1", b"pong")
    b.tun.inject(to_a)
    run((a, b), clock)
    assert a.tun.take_written() == [to_a]
    # b learnt a's endpoint from the handshake
    assert b.device.get_peer(a.device.public_key).endpoint == ("192.0.2.1", 51820)


def test_a_batch_of_packets_arrives_whole_and_in_order(pair) -> None:
    a, b, _network, clock = pair
    a.tun.inject(ipv4_packet("10.0.0.1", "10.0.0.2", b"first"))
    run((a, b), clock)
    b.tun.take_written()
    packets = [ipv4_packet("10.0.0.1", "10.0.0.2", bytes([i]) * 1000) for i in range(200)]
    for packet in packets:
        a.tun.inject(packet)
    run((a, b), clock)
    assert b.tun.take_written() == packets


def test_garbage_from_the_network_is_dropped_and_counted(pair) -> None:
    a, b, network, clock = pair
    a.tun.inject(ipv4_packet("10.0.0.1", "10.0.0.2", b"hello"))
    run((a, b), clock)
    b.tun.take_written()
    attacker = ("198.51.100.9", 666)
    for i in range(500):
        kind = (1, 2, 3, 4, 9)[i % 5]
        network.inject(bytes([kind, 0, 0, 0]) + os.urandom(i % 200), attacker,
                       ("192.0.2.2", 51821))
    run((a, b), clock)
    assert sum(b.device.drops.values()) >= 500
    assert b.device.drops[DropReason.UNKNOWN_TYPE] >= 100
    assert b.tun.take_written() == []
    # nothing moved: the tunnel still works and b's endpoint for a is unchanged
    packet = ipv4_packet("10.0.0.2", "10.0.0.1", b"still fine")
    b.tun.inject(packet)
    run((a, b), clock)
    assert a.tun.take_written() == [packet]
    assert b.device.get_peer(a.device.public_key).endpoint == ("192.0.2.1", 51820)


def test_roaming_peer_is_followed_after_an_authenticated_packet(pair) -> None:
    a, b, _network, clock = pair
    a.tun.inject(ipv4_packet("10.0.0.1", "10.0.0.2", b"hello"))
    run((a, b), clock)
    a.udp.move_to("192.0.2.99", 40001)
    packet = ipv4_packet("10.0.0.1", "10.0.0.2", b"from elsewhere")
    a.tun.inject(packet)
    run((a, b), clock)
    assert b.tun.take_written()[-1] == packet
    assert b.device.get_peer(a.device.public_key).endpoint == ("192.0.2.99", 40001)
    reply = ipv4_packet("10.0.0.2", "10.0.0.1", b"found you")
    b.tun.inject(reply)
    run((a, b), clock)
    assert a.tun.take_written() == [reply]


def test_persistent_keepalive_runs_on_the_loop_timer(pair) -> None:
    a, b, _network, clock = pair
    peer_b = a.device.get_peer(b.device.public_key)
    a.device.set_persistent_keepalive(peer_b, 5, clock.now)
    run((a, b), clock)  # immediate keepalive: handshake + keepalive
    peer_a = b.device.get_peer(a.device.public_key)
    assert peer_a.last_handshake is not None
    received = peer_a.rx_bytes
    run((a, b), clock, seconds=21)
    assert peer_a.rx_bytes == received + 4 * 32  # one 32-byte keepalive every 5 s


def test_handshake_retries_when_the_first_initiation_is_lost(pair) -> None:
    a, b, network, clock = pair
    b_address = ("192.0.2.2", 51821)
    del network.binds[b_address]  # b is unreachable for a while
    a.tun.inject(ipv4_packet("10.0.0.1", "10.0.0.2", b"queued"))
    run((a, b), clock)
    assert network.lost == 1
    network.binds[b_address] = b.udp
    run((a, b), clock, seconds=6)  # REKEY_TIMEOUT (5 s) + jitter
    assert [p[-6:] for p in b.tun.take_written()] == [b"queued"]
