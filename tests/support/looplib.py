"""Loop test helpers: a scripted core (io/loop.py's Core), a settable clock, draining a loop, and a
DeviceLoop turning in a background thread for tests that talk to it over a real socket."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from wgpy.io.loop import DeviceLoop
from wgpy.io.memory import MemoryNetwork, MemoryUdp


@contextlib.contextmanager
def spinning(loop: DeviceLoop) -> Iterator[DeviceLoop]:
    """Run `loop` in short rounds in a daemon thread until the block ends; then stop it."""
    running = threading.Event()
    running.set()

    def spin() -> None:
        while running.is_set():
            loop.run_once(max_wait=0.01)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        running.clear()
        thread.join(2)


class ScriptedDevice:
    """A core (io/loop.py's Core) that echoes: a TUN packet p becomes datagram b"enc:"+p to
    `peer`; a datagram d from the network becomes TUN packet b"dec:"+d. Timers fire at
    `deadline`."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.datagrams: list = []  # what take_datagrams hands over next
        self.packets: list = []  # what take_packets hands over next
        self.sent_packets: list = []
        self.received: list = []
        self.deadline: float | None = None
        self.timer_calls: list[float] = []
        self.drops: collections.Counter = collections.Counter()
        self.wall_offset = 0.0
        self.mtu = 1420
        self.peers: dict = {}

    def send_packet(self, packet: bytes, now: float) -> None:
        self.sent_packets.append((packet, now))
        self.datagrams.append((b"enc:" + packet, self.peer))

    def receive_datagram(self, data: bytes, src, now: float) -> None:
        self.received.append((data, src, now))
        if data == b"boom":
            raise RuntimeError("a core bug")
        self.packets.append(b"dec:" + data)

    def send_packets(self, packets, now: float) -> None:
        for packet in packets:
            self.send_packet(packet, now)

    def receive_datagrams(self, datagrams, now: float) -> None:
        for data, src in datagrams:
            self.receive_datagram(data, src, now)

    def next_deadline(self) -> float | None:
        return self.deadline

    def on_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        self.deadline = None
        self.datagrams.append((b"timer", self.peer))

    def take_datagrams(self) -> list:
        datagrams, self.datagrams = self.datagrams, []
        return datagrams

    def take_packets(self) -> list:
        packets, self.packets = self.packets, []
        return packets

    def take_events(self) -> list:
        return []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(loop: DeviceLoop, rounds: int = 5) -> None:
    for _ in range(rounds):
        loop.run_once(max_wait=0)


def scripted_rig(tun: Any) -> tuple:
    """A DeviceLoop over `tun`, a ScriptedDevice and a memory network: (loop, device, tun,
    udp, remote, clock); the loop sends from 192.0.2.1:51820, `remote` is 192.0.2.2:51821."""
    network = MemoryNetwork()
    udp = MemoryUdp(network, "192.0.2.1")
    udp.open(51820)
    remote = MemoryUdp(network, "192.0.2.2")
    remote.open(51821)
    device = ScriptedDevice(("192.0.2.2", 51821))
    clock = FakeClock()
    loop = DeviceLoop(device, tun, udp, clock=clock, batch=4, wall_clock=lambda: 5000.0)
    return loop, device, tun, udp, remote, clock
