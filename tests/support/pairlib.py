"""Two devices in memory with a fake clock: the harness of the pair tests."""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field

from wgpy.core import crypto
from wgpy.core.device import Device

A_ENDPOINT = ("192.0.2.1", 51820)
B_ENDPOINT = ("192.0.2.2", 51821)


def ipv4_packet(src: str, dst: str, payload: bytes = b"hello", proto: int = 17) -> bytes:
    total = 20 + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )
    return header + payload


def ipv6_packet(src: str, dst: str, payload: bytes = b"hello6", next_header: int = 17) -> bytes:
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(payload), next_header, 64,
        ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed,
    )
    return header + payload


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def seeded_rng(seed: int):
    r = random.Random(seed)
    return r.randbytes


@dataclass
class Node:
    device: Device
    endpoint: tuple[str, int]
    private_key: bytes
    public_key: bytes
    received: list[bytes] = field(default_factory=list)  # packets delivered to the TUN


def make_node(seed: int, endpoint: tuple[str, int], clock: Clock) -> Node:
    rng = seeded_rng(seed)
    private, public = crypto.generate_keypair(rng(32))
    device = Device(rng=rng)
    device.wall_offset = 1_700_000_000.0
    device.set_private_key(private)
    return Node(device, endpoint, private, public)


class Pair:
    """A and B peered with each other. `deliver()` moves datagrams until quiet.

    `a_net`/`b_net` are the tunnel prefixes; `tap` sees every datagram; `drop` may filter."""

    def __init__(self, psk: bytes | None = None, seed: int = 1, a_knows_b_endpoint: bool = True,
                 b_knows_a_endpoint: bool = False) -> None:
        self.clock = Clock()
        self.a = make_node(seed, A_ENDPOINT, self.clock)
        self.b = make_node(seed + 100, B_ENDPOINT, self.clock)
        self.peer_b = self.a.device.add_peer(self.b.public_key)
        self.peer_a = self.b.device.add_peer(self.a.public_key)
        self.a.device.allowed_ips.insert(ipaddress.ip_network("10.9.0.2/32"), self.peer_b)
        self.a.device.allowed_ips.insert(ipaddress.ip_network("fd00:9::2/128"), self.peer_b)
        self.b.device.allowed_ips.insert(ipaddress.ip_network("10.9.0.1/32"), self.peer_a)
        self.b.device.allowed_ips.insert(ipaddress.ip_network("fd00:9::1/128"), self.peer_a)
        if psk is not None:
            self.peer_b.set_preshared_key(psk)
            self.peer_a.set_preshared_key(psk)
        if a_knows_b_endpoint:
            self.a.device.set_endpoint(self.peer_b, B_ENDPOINT)
        if b_knows_a_endpoint:
            self.b.device.set_endpoint(self.peer_a, A_ENDPOINT)
        self.wire: list[tuple[str, bytes]] = []  # ("a->b" | "b->a", datagram) log
        self.drop = lambda direction, datagram: False

    @property
    def now(self) -> float:
        return self.clock.now

    def node_at(self, endpoint: tuple[str, int]) -> Node | None:
        for node in (self.a, self.b):
            if node.endpoint == endpoint:
                return node
        return None

    def deliver(self, max_rounds: int = 50) -> int:
        """Move datagrams between the two until none are left; returns how many moved.

        Like the IO loop, each round first fires the timers that are due (among them an
        initiation that keep-key-fresh queued during the last call)."""
        moved = 0
        for _ in range(max_rounds):
            busy = False
            for node in (self.a, self.b):  # what is due goes first, as in DeviceLoop.run_once
                node.device.on_timer(self.now)
            for src in (self.a, self.b):
                out = src.device.take_datagrams()
                for datagram, dst in out:
                    busy = True
                    direction = "a->b" if src is self.a else "b->a"
                    self.wire.append((direction, datagram))
                    if self.drop(direction, datagram):
                        continue
                    target = self.node_at(dst)
                    if target is None:
                        continue
                    moved += 1
                    target.device.receive_datagram(datagram, src.endpoint, self.now)
            for node in (self.a, self.b):
                node.received.extend(node.device.take_packets())
            if not busy:
                break
        return moved

    def tick(self, seconds: float, step: float = 0.1) -> None:
        """Advance the clock, firing timers and delivering as time passes."""
        end = self.now + seconds
        while True:
            deadlines = [
                d for d in (self.a.device.next_deadline(), self.b.device.next_deadline())
                if d is not None and d <= end
            ]
            target = min(deadlines) if deadlines else end
            self.clock.now = max(self.clock.now, target)
            self.a.device.on_timer(self.now)
            self.b.device.on_timer(self.now)
            self.deliver()
            if target >= end:
                break

    def a_sends(self, payload: bytes = b"ping") -> bytes:
        packet = ipv4_packet("10.9.0.1", "10.9.0.2", payload)
        self.a.device.send_packet(packet, self.now)
        self.deliver()
        return packet

    def b_sends(self, payload: bytes = b"pong") -> bytes:
        packet = ipv4_packet("10.9.0.2", "10.9.0.1", payload)
        self.b.device.send_packet(packet, self.now)
        self.deliver()
        return packet
