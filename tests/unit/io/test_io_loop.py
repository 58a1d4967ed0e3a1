"""DeviceLoop over the in-memory TUN and network, with a scripted stand-in for the Device.

The stand-in records what the loop hands it and produces outputs on demand, so these tests pin
the loop's contract (batching, flushing, timers, stopping) independently of the protocol core.
"""

from __future__ import annotations

import collections
import logging

import pytest

from wgpy.errors import DropReason
from wgpy.io.loop import DeviceLoop
from wgpy.io.memory import MemoryNetwork, MemoryTun, MemoryUdp


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


@pytest.fixture
def rig():
    network = MemoryNetwork()
    udp = MemoryUdp(network, "192.0.2.1")
    udp.open(51820)
    remote = MemoryUdp(network, "192.0.2.2")
    remote.open(51821)
    tun = MemoryTun()
    device = ScriptedDevice(("192.0.2.2", 51821))
    clock = FakeClock()
    loop = DeviceLoop(device, tun, udp, clock=clock, batch=4, wall_clock=lambda: 5000.0)
    yield loop, device, tun, udp, remote, clock
    loop.close()


def drain(loop: DeviceLoop, rounds: int = 5) -> None:
    for _ in range(rounds):
        loop.run_once(max_wait=0)


def test_tun_packets_are_encrypted_in_batches_and_flushed_to_the_network(rig):
    loop, device, tun, udp, _remote, clock = rig
    for i in range(10):
        tun.inject(b"p%d" % i)
    loop.run_once(max_wait=0)
    # one readiness event handles at most `batch` packets, then flushes them together
    assert [p for p, _ in device.sent_packets] == [b"p0", b"p1", b"p2", b"p3"]
    assert all(now == clock.now for _, now in device.sent_packets)
    assert [d for d, _ in udp.sent] == [b"enc:p0", b"enc:p1", b"enc:p2", b"enc:p3"]
    assert device.datagrams == []
    drain(loop)
    assert [d for d, _ in udp.sent] == [b"enc:p%d" % i for i in range(10)]
    assert all(ep == ("192.0.2.2", 51821) for _, ep in udp.sent)


def test_datagrams_reach_the_device_with_their_source_and_output_goes_to_the_tun(rig):
    loop, device, tun, _udp, remote, _clock = rig
    remote.send(b"hello", ("192.0.2.1", 51820))
    remote.send(b"world", ("192.0.2.1", 51820))
    drain(loop)
    assert [(d, s) for d, s, _ in device.received] == [
        (b"hello", ("192.0.2.2", 51821)),
        (b"world", ("192.0.2.2", 51821)),
    ]
    assert tun.take_written() == [b"dec:hello", b"dec:world"]


def test_a_core_exception_on_one_datagram_does_not_stop_the_batch_or_the_loop(rig):
    loop, _device, tun, _udp, remote, _clock = rig
    for data in (b"a", b"boom", b"b"):
        remote.send(data, ("192.0.2.1", 51820))
    drain(loop)
    assert tun.take_written() == [b"dec:a", b"dec:b"]
    assert loop.stop_reason is None


def test_timer_fires_only_once_its_deadline_has_passed(rig):
    loop, device, _tun, udp, _remote, clock = rig
    drain(loop)
    device.deadline = clock.now + 5
    drain(loop)
    assert device.timer_calls == []
    clock.now += 5
    loop.run_once(max_wait=0)
    assert device.timer_calls == [clock.now]
    assert udp.sent[-1] == (b"timer", ("192.0.2.2", 51821))


def test_wall_offset_is_kept_for_the_core(rig):
    loop, device, _tun, _udp, _remote, clock = rig
    loop.run_once(max_wait=0)
    assert device.wall_offset == 5000.0 - clock.now


def test_padding_follows_the_interface_mtu_set_after_start(rig):
    """wg-quick sets the MTU after the daemon started; the core must pad to it."""
    loop, device, tun, _udp, _remote, clock = rig
    loop.run_once(max_wait=0)
    tun.mtu = 1412
    loop.run_once(max_wait=0)
    assert device.mtu == 1420  # not yet: checked with the housekeeping, once a second
    clock.now += 1.0
    loop.run_once(max_wait=0)
    assert device.mtu == 1412
    tun.delete()  # an unreadable MTU changes nothing
    clock.now += 1.0
    loop._housekeeping()
    assert device.mtu == 1412


def test_link_deletion_stops_the_loop(rig):
    loop, _device, tun, _udp, _remote, _clock = rig
    tun.delete()
    assert loop.run() == "link deleted"


def test_rebind_moves_the_device_to_the_new_port(rig):
    loop, device, _tun, _udp, remote, _clock = rig
    assert loop.rebind(6000) == 6000
    remote.send(b"old", ("192.0.2.1", 51820))
    remote.send(b"new", ("192.0.2.1", 6000))
    drain(loop)
    assert [d for d, _, _ in device.received] == [b"new"]


def test_a_failed_rebind_keeps_the_old_port_in_service(rig):
    loop, device, _tun, udp, remote, _clock = rig
    udp.refuse_ports.add(7000)
    with pytest.raises(OSError):
        loop.rebind(7000)
    remote.send(b"still here", ("192.0.2.1", 51820))
    drain(loop)
    assert [d for d, _, _ in device.received] == [b"still here"]


def test_stop_ends_run_with_the_reason(rig):
    loop, _device, _tun, _udp, _remote, _clock = rig
    loop.stop("SIGTERM")
    loop.stop("later reasons do not overwrite")
    assert loop.run() == "SIGTERM"


def test_drop_counters_are_logged_at_debug_level_once_per_interval(rig, caplog):
    loop, device, _tun, _udp, _remote, clock = rig
    loop.run_once(max_wait=0)
    device.drops[DropReason.UNKNOWN_RECEIVER] += 3
    with caplog.at_level(logging.DEBUG, logger="wgpy.io.loop"):
        loop.run_once(max_wait=0)
        assert caplog.messages == []  # not before the housekeeping interval
        clock.now += 1.0
        loop.run_once(max_wait=0)
        clock.now += 1.0
        loop.run_once(max_wait=0)  # nothing new: nothing logged again
    assert caplog.messages == ["dropped 3: unknown receiver index"]


def test_set_events_reports_readiness_as_selector_masks_and_remove_tolerates_closed_sockets(rig):
    import selectors
    import socket

    loop, _device, _tun, _udp, _remote, _clock = rig
    left, right = socket.socketpair()
    masks: list[int] = []
    try:
        loop.set_events(left, selectors.EVENT_WRITE, masks.append)
        loop.run_once(max_wait=0)
        assert masks == [selectors.EVENT_WRITE]  # an empty socket buffer is writable
        loop.set_events(left, selectors.EVENT_READ, masks.append)
        loop.run_once(max_wait=0)
        assert masks == [selectors.EVENT_WRITE]  # nothing to read yet
        right.send(b"x")
        loop.run_once(max_wait=0)
        assert masks == [selectors.EVENT_WRITE, selectors.EVENT_READ]
        right.send(b"y")
        left.close()
        loop.remove(left)  # closed first, as the UAPI server may do: no error, no events
        loop.run_once(max_wait=0)
        assert masks == [selectors.EVENT_WRITE, selectors.EVENT_READ]
    finally:
        left.close()
        right.close()
