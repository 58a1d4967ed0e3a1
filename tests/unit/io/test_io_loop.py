"""DeviceLoop over the in-memory TUN and network, with a scripted stand-in for the Device.

The stand-in records what the loop hands it and produces outputs on demand, so these tests pin
the loop's contract (batching, flushing, timers, stopping) independently of the protocol core.
"""

from __future__ import annotations

import logging

import pytest
from looplib import drain, scripted_rig

from wgpy.errors import DropReason
from wgpy.io.memory import MemoryTun


@pytest.fixture
def rig():
    rig = scripted_rig(MemoryTun())
    yield rig
    rig[0].close()


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
    loop.run_once(max_wait=0)
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
