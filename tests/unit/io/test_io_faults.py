"""Faults are counted and survived: a TUN that fails with ENOBUFS/ENOMEM/EIO loses packets, not
the daemon, and an exception out of a loop callback (a bug) is logged and the loop goes on.
Both are logged at a bounded rate.

The TUN's syscalls are faked (os.read/os.write/os.writev raising the errno), the loop runs over
the in-memory fakes with a scripted clock.
"""

from __future__ import annotations

import errno
import logging
import os
import socket

import pytest
from looplib import FakeClock, drain, scripted_rig
from packets import tcp4

from wgpy import fastpath
from wgpy.control.stats import format_stats
from wgpy.errors import DropReason
from wgpy.io import ratelog
from wgpy.io.memory import MemoryTun
from wgpy.io.tun_gro import coalesce
from wgpy.io.tun_linux import LinkGone, TunDevice, TunDropped

# --- TunDevice over faked syscalls ----------------------------------------------------------


@pytest.fixture
def tun_fd():
    left, right = socket.socketpair()  # a real fd for TunDevice to hold; the syscalls are faked
    yield left.fileno()
    left.close()
    right.close()


def failing(calls: list, fail: dict[int, int], result=None):
    """A stand-in for os.write/os.writev: call number i raises OSError(fail[i])."""

    def syscall(fd, data):
        calls.append(data)
        if len(calls) - 1 in fail:
            raise OSError(fail[len(calls) - 1], os.strerror(fail[len(calls) - 1]))
        return result

    return syscall


@pytest.mark.parametrize("code", [errno.ENOBUFS, errno.ENOMEM, errno.EIO, errno.EINVAL,
                                  errno.EAGAIN])
def test_a_failed_write_loses_that_packet_the_rest_of_the_batch_is_written(monkeypatch, tun_fd,
                                                                            code):
    calls: list = []
    monkeypatch.setattr(os, "write", failing(calls, {1: code}))
    tun = TunDevice(tun_fd, "wgdfault0", vnet_hdr=False)
    with pytest.raises(TunDropped) as raised:
        tun.write_batch([b"p0", b"p1", b"p2"])
    assert calls == [b"p0", b"p1", b"p2"]
    assert (raised.value.errno, raised.value.dropped) == (code, 1)


def test_a_failed_coalesced_write_counts_every_segment_in_it(monkeypatch, tun_fd):

    packets = [tcp4(b"a" * 100, 100 * i) for i in range(5)] + [b"\x45" + bytes(39)]
    # one super-packet, one alone
    assert [len(w) for w in coalesce(packets, fastpath.checksums_valid)] == [2 + 5, 2]
    calls: list = []
    # each write one buffer (os.write, fastpath.gro_coalesce in C: the count comes from its
    # vnet header) or an iovec list (os.writev: pure Python)
    syscall = failing(calls, {0: errno.ENOBUFS})
    monkeypatch.setattr(os, "write", syscall)
    monkeypatch.setattr(os, "writev", syscall)
    tun = TunDevice(tun_fd, "wgdfault0", vnet_hdr=True)
    with pytest.raises(TunDropped) as raised:
        tun.write_batch(packets)
    assert len(calls) == 2
    assert raised.value.dropped == 5
    # with a last segment shorter than the others too
    packets = [tcp4(b"a" * 100, 100 * i) for i in range(4)] + [tcp4(b"a" * 7, 400)]
    calls.clear()
    with pytest.raises(TunDropped) as raised:
        tun.write_batch(packets)
    assert len(calls) == 1 and raised.value.dropped == 5
    # and the pure path's iovec lists (os.writev)
    calls.clear()
    fastpath.select(True, "test")
    try:
        with pytest.raises(TunDropped) as raised:
            tun.write_batch(packets)
    finally:
        fastpath.select(False)
    assert len(calls) == 1 and raised.value.dropped == 5


def test_link_gone_still_ends_a_write_batch(monkeypatch, tun_fd):
    monkeypatch.setattr(os, "write", failing([], {0: errno.EIO, 1: errno.EBADFD}))
    with pytest.raises(LinkGone):
        TunDevice(tun_fd, "wgdfault0", vnet_hdr=False).write_batch([b"a", b"b", b"c"])


def test_a_failed_read_keeps_the_packets_read_before_it(monkeypatch, tun_fd):
    results: list = [b"p0", b"p1", OSError(errno.ENOMEM, "no memory")]

    def read(fd, size):
        result = results.pop(0)
        if isinstance(result, OSError):
            raise result
        return result

    monkeypatch.setattr(os, "read", read)
    tun = TunDevice(tun_fd, "wgdfault0", vnet_hdr=False)
    with pytest.raises(TunDropped) as raised:
        tun.read_batch(8)
    assert (raised.value.errno, raised.value.dropped, raised.value.packets) == (
        errno.ENOMEM, 1, [b"p0", b"p1"])


# --- the loop: counted, logged at a bounded rate, never fatal --------------------------------


class FailingTun(MemoryTun):
    """A MemoryTun whose next reads/writes raise OSError(errno) as queued in `*_errors`."""

    def __init__(self) -> None:
        super().__init__()
        self.read_errors: list[OSError] = []
        self.write_errors: list[OSError] = []

    def read_batch(self, limit: int) -> list[bytes]:
        if self.read_errors:
            raise self.read_errors.pop(0)
        return super().read_batch(limit)

    def write_batch(self, packets: list[bytes]) -> None:
        if self.write_errors:
            raise self.write_errors.pop(0)
        super().write_batch(packets)


@pytest.fixture
def faulty():
    rig = scripted_rig(FailingTun())
    yield rig
    rig[0].close()


def test_enobufs_on_a_tun_write_is_a_counted_drop_and_the_loop_goes_on(faulty, caplog):
    loop, device, tun, _udp, remote, clock = faulty
    tun.write_errors = [OSError(errno.ENOBUFS, "No buffer space available")] * 40
    with caplog.at_level(logging.WARNING, logger="wgpy.io.loop"):
        for i in range(41):
            remote.send(b"d%d" % i, ("192.0.2.1", 51820))
            drain(loop, 1)
    assert loop.stop_reason is None
    assert tun.take_written() == [b"dec:d40"]  # the packet after the failures got through
    assert device.drops[DropReason.TUN_WRITE_FAILED] == 40
    assert "drop_tun_write_failed=40\n" in format_stats(device.drops)  # `wgpy show --json`
    # logged at error level (seen at the default LOG_LEVEL=error, as wireguard-go's "Failed to
    # write packets to TUN device"), but not 40 times
    records = [r for r in caplog.records if "No buffer space" in r.getMessage()]
    assert 1 <= len(records) <= ratelog.BURST
    assert all(r.levelno == logging.ERROR for r in records)
    # after the interval the next failure is logged again, with what was held back
    clock.now += ratelog.INTERVAL
    tun.write_errors = [OSError(errno.ENOBUFS, "No buffer space available")]
    with caplog.at_level(logging.WARNING, logger="wgpy.io.loop"):
        remote.send(b"again", ("192.0.2.1", 51820))
        drain(loop, 1)
    assert f"({40 - ratelog.BURST} more like this not logged)" in caplog.records[-1].getMessage()


def test_a_tun_drop_counts_what_the_tun_says_it_lost(faulty):
    loop, device, tun, _udp, remote, _clock = faulty
    tun.write_errors = [TunDropped(errno.ENOMEM, 2)]
    for data in (b"a", b"b", b"c"):
        remote.send(data, ("192.0.2.1", 51820))
    drain(loop, 1)
    assert device.drops[DropReason.TUN_WRITE_FAILED] == 2


def test_a_failed_tun_read_is_a_counted_drop_and_what_was_read_still_goes_out(faulty):
    loop, device, tun, udp, _remote, _clock = faulty
    tun.read_errors = [OSError(errno.EIO, "Input/output error"),
                       TunDropped(errno.ENOMEM, 1, [b"read before"])]
    tun.inject(b"later")
    drain(loop, 4)
    assert loop.stop_reason is None
    assert device.drops[DropReason.TUN_READ_FAILED] == 2
    assert [d for d, _ in udp.sent] == [b"enc:read before", b"enc:later"]


def test_an_exception_out_of_a_callback_is_logged_with_its_traceback_and_the_loop_goes_on(
        faulty, caplog):
    loop, _device, tun, _udp, remote, _clock = faulty
    left, right = socket.socketpair()
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("a bug in a callback")

    try:
        loop.add_reader(left, broken)
        right.send(b"x")  # stays readable: the callback fails every round
        with caplog.at_level(logging.ERROR, logger="wgpy.io.loop"):
            for _ in range(20):
                loop.run_once(max_wait=0)
        assert len(calls) == 20
        records = [r for r in caplog.records if "broken" in r.getMessage()]
        assert 1 <= len(records) <= ratelog.BURST
        assert records[0].levelno == logging.ERROR
        assert records[0].exc_info and "a bug in a callback" in str(records[0].exc_info[1])
        # meanwhile the data path still works
        remote.send(b"through", ("192.0.2.1", 51820))
        drain(loop, 2)
        assert tun.take_written() == [b"dec:through"]
        assert loop.stop_reason is None
    finally:
        loop.remove(left)
        left.close()
        right.close()


def test_exceptions_out_of_housekeeping_and_timers_do_not_end_the_loop(faulty, caplog):
    loop, device, _tun, udp, _remote, clock = faulty
    ran = []

    def broken_check() -> None:
        raise ValueError("bug")

    loop.on_housekeeping.extend([broken_check, lambda: ran.append(clock.now)])

    def broken_timer(now: float) -> None:
        device.datagrams.append((b"before the bug", device.peer))
        raise RuntimeError("timer bug")

    device.on_timer = broken_timer
    device.deadline = clock.now
    with caplog.at_level(logging.ERROR, logger="wgpy.io.loop"):
        loop.run_once(max_wait=0)
    assert ran == [clock.now]  # the next housekeeping callback still ran
    assert udp.sent[-1][0] == b"before the bug"
    messages = [r.getMessage() for r in caplog.records]
    assert any("broken_check" in m for m in messages)
    assert any("broken_timer" in m for m in messages)
    device.next_deadline = lambda: 1 / 0  # even the core's deadline query failing
    clock.now += 1.0
    loop.run_once(max_wait=0)
    assert loop.stop_reason is None


def test_the_rate_limited_log_bounds_per_key_and_reports_what_it_held_back(caplog):
    clock = FakeClock()
    logger = logging.getLogger("wgpy.test.ratelog")
    limited = ratelog.RateLimitedLog(logger, clock, interval=10.0, burst=2)
    with caplog.at_level(logging.INFO, logger="wgpy.test.ratelog"):
        shown = [limited.log(logging.INFO, "a", "fault %d", i) for i in range(5)]
        other = limited.log(logging.INFO, "b", "other fault")
        clock.now += 10.0
        limited.log(logging.INFO, "a", "fault %d", 5)
    assert shown == [True, True, False, False, False] and other
    assert caplog.messages == ["fault 0", "fault 1", "other fault",
                               "fault 5 (3 more like this not logged)"]
