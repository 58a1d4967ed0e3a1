"""The event loop that drives a sans-IO `Device`: the only place packets move.

One thread, one epoll, no locks. Each readiness event is handled as a batch:

    TUN readable  -> read up to BATCH packets -> core.send_packets(batch, now) -> flush
    UDP readable  -> read up to BATCH datagrams -> core.receive_datagrams(batch, now) -> flush
    flush         -> core.take_datagrams() to the UDP sockets, core.take_packets() to the TUN
    deadline      -> core.on_timer(now) when core.next_deadline() has passed -> flush

The loop sees the core, the TUN and the UDP bind through the protocols below (`Core`, `TunLike`,
`NetLike`); the in-memory fakes of memory.py implement them whole, so tests run the same loop.

Batching is where the speed comes from: the core collects its outputs in lists and the loop hands
a whole list to the IO objects at once, which is where the offloads plug in: UDP GSO
(`UdpBind.send_batch`: one sendmsg per run of equal-sized datagrams), UDP GRO (`receive_batch`:
one recvmsg for many datagrams) and GRO into the TUN (`TunDevice.write_batch`: one writev per run
of TCP segments, see tun_gro.py). The hot methods bind what they call to locals.

The loop waits on `select.epoll` itself rather than through `selectors`: a wake-up for one
packet (ping) costs a few microseconds less without the selector's key objects and mask
translation, and the hot file descriptors dispatch straight to a bound method.

The netlink sockets of rtnl.py (when the daemon asks for them, `watch_route_events`) bring link,
address and route changes: the TUN's MTU is followed the moment it changes, also after the
interface was moved to another namespace (its link socket is re-made where it went), and the
peers' cached source addresses (udp.py) are re-checked.

Anything else that wants the loop (the UAPI server, the signal wake-up) registers a callback with
`add_reader`/`set_events` (`selectors.EVENT_READ`/`EVENT_WRITE` masks, as before).

Faults are counted and survived, never fatal: a TUN read or write that fails for any reason but
the link going away loses its packets (counted under DropReason.TUN_READ_FAILED/_WRITE_FAILED),
and an exception out of any callback, timer or housekeeping step (a bug) is logged with its
traceback and the loop goes on. Both are logged at a bounded rate (io/ratelog.py): a fault that
repeats per packet must not become a log line per packet.
"""

from __future__ import annotations

import collections
import errno
import gc
import logging
import select
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from wgpy.core.events import Event
from wgpy.core.peer import Peer, forget_sources
from wgpy.errors import DropReason
from wgpy.io.ratelog import RateLimitedLog
from wgpy.io.rtnl import ADDRESS_AND_ROUTE_GROUPS, RouteEvents, SourceChecker
from wgpy.io.tun_linux import LinkGone, TunDropped
from wgpy.model import Endpoint

log = logging.getLogger("wgpy.io.loop")

# Packets or datagrams handled per readiness event. Measured with bench/compare.py (TCP, one
# stream, both ways, 4 rounds each): 16 -> 0.81x, 32 -> 0.9x, 64 -> 0.95x of 128; 256 and 512
# no better than 128; paced UDP the same within noise.
BATCH = 128
HOUSEKEEPING_INTERVAL = 1.0  # seconds between drop-counter logs and other slow checks
# After an address or route change every cached source is checked against the host's addresses
# (one dump), and up to this many also with a route lookup each (~40 us): a larger device only
# notices a route that moved to another interface by the peer's next packet.
SOURCE_ROUTE_CHECKS_MAX = 1024


class Core(Protocol):
    """What the loop needs of the sans-IO core (core/device.py's Device)."""

    mtu: int  # the loop keeps it at the interface's MTU
    wall_offset: float  # wall clock minus the loop's monotonic clock (TAI64N stamps)
    drops: collections.Counter[DropReason]

    @property
    def peers(self) -> Mapping[bytes, Peer]: ...  # for forgetting stale local sources
    def send_packets(self, packets: Iterable[bytes], now: float) -> None: ...
    def receive_datagrams(self, datagrams: Iterable[tuple[bytes, Endpoint]],
                          now: float) -> None: ...
    def next_deadline(self) -> float | None: ...
    def on_timer(self, now: float) -> None: ...
    def take_datagrams(self) -> list[tuple[bytes, Endpoint]]: ...
    def take_packets(self) -> list[bytes]: ...
    def take_events(self) -> list[Event]: ...


class TunLike(Protocol):
    """Reads and writes raise LinkGone once the interface is deleted; any other OSError means
    packets were lost (`TunDropped` says how many; a plain OSError costs the whole batch)."""

    def fileno(self) -> int: ...
    def current_mtu(self) -> int | None: ...  # None: cannot tell now
    def link_events(self) -> RouteEvents | None: ...  # None: nothing to watch, poll the MTU
    def read_packet(self) -> bytes | None: ...
    def read_batch(self, limit: int) -> list[bytes]: ...
    def write_packet(self, packet: bytes) -> None: ...
    def write_batch(self, packets: list[bytes]) -> None: ...
    def close(self) -> None: ...


class NetLike(Protocol):
    port: int
    drops: collections.Counter[DropReason]  # the loop shares the core's counter
    stale_sources: set[bytes]  # local sources a send found gone (see udp.py)
    send_errors: int  # datagrams that could not be sent, for the log

    def sockets(self) -> list[Any]: ...
    def open(self, port: int) -> int: ...
    def set_mark(self, mark: int) -> None: ...
    def receive_batch(self, sock: Any, out: list[tuple[bytes, Endpoint]], limit: int) -> None: ...
    def send_batch(self, datagrams: list[tuple[bytes, Endpoint]]) -> None: ...
    def close(self) -> None: ...


Callback = Callable[[], None]


class DeviceLoop:
    """Runs `device` over `tun` and `net` until `stop()` (signal, link deleted, error)."""

    def __init__(
        self,
        device: Core,
        tun: TunLike,
        net: NetLike,
        clock: Callable[[], float] = time.monotonic,
        batch: int = BATCH,
        wall_clock: Callable[[], float] = time.time,
        source_checker: SourceChecker | None = None,
    ) -> None:
        self.device = device
        self.tun = tun
        self.net = net
        self.clock = clock
        self.wall_clock = wall_clock
        self.batch = batch
        self._epoll = select.epoll()
        # fd -> (file object, callback, wants the ready mask)
        self._handlers: dict[int, tuple[Any, Callable[..., None], bool]] = {}
        self.stop_reason: str | None = None
        self.on_housekeeping: list[Callback] = []
        self._rx: list[tuple[bytes, Endpoint]] = []
        self._last_drops: collections.Counter[DropReason] = collections.Counter()
        self._last_send_errors = 0
        self._next_housekeeping = 0.0
        self._signal_socks: tuple[socket.socket, socket.socket] | None = None
        self._route_events: RouteEvents | None = None  # addresses and routes, our namespace
        self._link_events: RouteEvents | None = None  # the TUN's link, in its namespace
        self._source_checker = source_checker  # made at the first route event if None
        self.faults = RateLimitedLog(log, clock)
        device.wall_offset = wall_clock() - clock()
        net.drops = device.drops  # e.g. SEND_BUFFER_FULL, counted by the UDP bind
        self._register(tun, select.EPOLLIN, self._on_tun_readable, False)
        self._register_sockets()

    # --- registration ----------------------------------------------------------------

    def _register(self, fileobj: Any, epoll_events: int, callback: Callable[..., None],
                  wants_mask: bool) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd in self._handlers:
            self._epoll.modify(fd, epoll_events)
        else:
            try:
                self._epoll.register(fd, epoll_events)
            except FileExistsError:  # an fd closed without remove() and reused
                self._epoll.modify(fd, epoll_events)
        self._handlers[fd] = (fileobj, callback, wants_mask)

    def add_reader(self, fileobj: Any, callback: Callback) -> None:
        self._register(fileobj, select.EPOLLIN, callback, False)

    def set_events(self, fileobj: Any, events: int, callback: Callable[[int], None]) -> None:
        """Register or modify `fileobj` for `events` (selectors.EVENT_READ/EVENT_WRITE);
        `callback(mask)` gets the ready mask in the same terms."""
        epoll_events = (select.EPOLLIN if events & selectors.EVENT_READ else 0) | (
            select.EPOLLOUT if events & selectors.EVENT_WRITE else 0
        )
        self._register(fileobj, epoll_events, callback, True)

    def remove(self, fileobj: Any) -> None:
        fd = -1
        if isinstance(fileobj, int):
            fd = fileobj
        else:
            try:
                fd = fileobj.fileno()
            except (OSError, ValueError):
                pass
        if fd < 0 or self._handlers.get(fd, (None,))[0] is not fileobj:
            # closed already (fileno() is -1): find it by identity
            fd = next((f for f, h in self._handlers.items() if h[0] is fileobj), -1)
        if fd < 0:
            return
        del self._handlers[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # closed: the kernel dropped it from the epoll set already

    def _register_sockets(self) -> None:
        for sock in self.net.sockets():
            self._register(sock, select.EPOLLIN, self._udp_reader(sock), False)

    def _unregister_sockets(self) -> None:
        for sock in self.net.sockets():
            self.remove(sock)

    # --- control (used by the UAPI configurator) ------------------------------------

    def rebind(self, port: int) -> int:
        """Bind the UDP sockets to `port` (0 = random); returns the bound port. On OSError
        the old sockets stay in service."""
        old = self.net.sockets()
        new_port = self.net.open(port)
        for sock in old:
            self.remove(sock)
        self._register_sockets()
        return new_port

    def set_mark(self, mark: int) -> None:
        self.net.set_mark(mark)

    def watch_route_events(self) -> None:
        """Follow the TUN's MTU and re-check the sticky source addresses the moment links,
        addresses or routes change (rtnl.py). Without it the MTU is polled once per
        housekeeping round."""
        self._route_events = RouteEvents(0, ADDRESS_AND_ROUTE_GROUPS)
        self.add_reader(self._route_events, self._on_route_events)
        self._watch_link()

    def _watch_link(self) -> None:
        """(Re)make the TUN's link socket in the namespace the interface is in now, then read
        its MTU: a change made before (wgpy-quick sets the MTU right after starting us; a move
        to another namespace) brought no event to this socket, and no later one can be missed."""
        if self._link_events is not None:
            self.remove(self._link_events)
            self._link_events.close()
            self._link_events = None
        try:
            self._link_events = self.tun.link_events()
        except OSError as e:  # (EBADFD: the link was deleted; the TUN reader ends the loop)
            log.log(logging.DEBUG if e.errno in (errno.EBADFD, errno.ENODEV)
                    else logging.WARNING,
                    "Cannot follow the interface's link events (%s); polling its MTU",
                    e.strerror)
        else:
            if self._link_events is not None:
                self.add_reader(self._link_events, self._on_link_events)
        self._follow_mtu()

    def _on_route_events(self) -> None:
        events = self._route_events
        assert events is not None
        changes = events.read()
        if changes.addresses_or_routes or changes.overrun:
            self.recheck_sources()

    def _on_link_events(self) -> None:
        events = self._link_events
        assert events is not None
        changes = events.read()
        if changes.link_left or changes.overrun:
            # moved to another namespace (or deleted), or events were lost (a move among
            # them?): find the interface where it is now and read its MTU there
            log.debug("re-reading the interface's namespace and MTU (%s)",
                      "it left" if changes.link_left else "events lost")
            self._watch_link()
            return
        if changes.mtu is not None and changes.mtu != self.device.mtu:
            log.debug("MTU of the interface is now %d", changes.mtu)
            self.device.mtu = changes.mtu

    def recheck_sources(self) -> None:
        """Forget the cached sources the kernel would no longer send from (rtnl.py): what an
        address or route change does."""
        peers = self.device.peers.values()
        cached = sum(1 for p in peers if p.endpoint is not None and len(p.endpoint) > 2)
        if not cached:
            return
        check_routes = cached <= SOURCE_ROUTE_CHECKS_MAX
        try:
            if self._source_checker is None:
                self._source_checker = SourceChecker()
            checker = self._source_checker
            checker.refresh()
            verdicts: dict[tuple[str, bytes], bool] = {}

            def stale(endpoint: tuple) -> bool:
                key = (endpoint[0], endpoint[2])
                verdict = verdicts.get(key)
                if verdict is None:
                    verdict = verdicts[key] = not checker.still_valid(*key, check_routes)
                return verdict

            forgotten = forget_sources(peers, stale)
        except Exception:
            # cannot ask the routing table: forgetting is safe (routing's choice until the
            # peer's next packet), keeping a dead source is not
            log.exception("checking the cached source addresses failed; forgetting them")
            forgotten = forget_sources(peers, lambda _endpoint: True)
        if forgotten:
            log.debug("forgot %d cached source address(es) after a route change", forgotten)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the loop; a socketpair wakes the selector at once."""
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._signal_socks = (reader, writer)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

        def handler(signum: int, _frame: object) -> None:
            self.stop(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

        def drain() -> None:
            try:
                while reader.recv(64):
                    pass
            except BlockingIOError:
                pass

        self.add_reader(reader, drain)

    # --- the hot path ---------------------------------------------------------------

    def _on_tun_readable(self) -> None:
        try:
            packets = self.tun.read_batch(self.batch)
        except LinkGone:
            self.stop("link deleted")
            return
        except OSError as e:
            self._tun_failed(DropReason.TUN_READ_FAILED, e, 1)
            packets = e.packets if isinstance(e, TunDropped) else []
        if packets:
            _feed(self.device.send_packets, packets, self.clock(), "a packet from the TUN")
            self.flush()

    def _udp_reader(self, sock: Any) -> Callback:
        receive_batch = self.net.receive_batch
        batch = self._rx
        limit = self.batch

        def on_udp_readable() -> None:
            receive_batch(sock, batch, limit)
            if batch:
                _feed(self.device.receive_datagrams, batch, self.clock(), "a received datagram")
                batch.clear()
                self.flush()

        return on_udp_readable

    def flush(self) -> None:
        """Hand the Device's outputs to the sockets and the TUN."""
        device = self.device
        datagrams = device.take_datagrams()
        if datagrams:
            net = self.net
            net.send_batch(datagrams)
            if net.stale_sources:  # a source address left the host: sent without, forget it
                stale = net.stale_sources
                forget_sources(device.peers.values(),
                               lambda endpoint: len(endpoint) > 2 and endpoint[2] in stale)
                stale.clear()
        packets = device.take_packets()
        if packets:
            try:
                self.tun.write_batch(packets)  # may coalesce TCP segments (tun_gro.py)
            except LinkGone:
                self.stop("link deleted")
            except OSError as e:
                self._tun_failed(DropReason.TUN_WRITE_FAILED, e, len(packets))

    def _tun_failed(self, reason: DropReason, error: OSError, batch: int) -> None:
        dropped = error.dropped if isinstance(error, TunDropped) else batch
        self.device.drops[reason] += dropped
        self.faults.log(logging.ERROR, (reason, error.errno), "%s: %s (%d packets lost)",
                        reason.value.split(" (")[0], error.strerror or error, dropped)

    def _unexpected(self, where: object) -> None:
        """The last-resort guard: a bug raised out of `where`; log it, traceback included,
        and go on."""
        name = _name_of(where)
        self.faults.log(logging.ERROR, (name, type(sys.exc_info()[1])),
                        "unexpected error in %s", name, exc_info=True)

    # --- running -----------------------------------------------------------------------

    def run(self) -> str:
        """Run until stopped; returns why."""
        # Everything allocated so far (modules, configuration) lives as long as the daemon:
        # take it out of the cyclic collector's full passes.
        gc.freeze()
        while self.stop_reason is None:
            self.run_once()
        return self.stop_reason

    def run_once(self, max_wait: float | None = None) -> None:
        """Run what is due (timers, housekeeping), then wait for one round of events (or the
        next deadline) and handle them.

        Due work is done before waiting rather than after, so that a wake-up for a packet
        reads the clock and the core's next deadline once, not twice."""
        now = self.clock()
        try:
            deadline = self._run_due(now)
        except Exception:  # noqa: BLE001 - the last-resort guard; _unexpected logs it
            self._unexpected(self._run_due)
            deadline = None
        wake = self._next_housekeeping
        if deadline is not None and deadline < wake:
            wake = deadline
        timeout = max(wake - now, 0.0)
        if max_wait is not None and timeout > max_wait:
            timeout = max_wait
        handlers = self._handlers
        for fd, event in self._epoll.poll(timeout):
            handler = handlers.get(fd)
            if handler is None:
                continue  # removed by an earlier callback of this round
            try:
                if handler[2]:
                    mask = 0
                    if event & ~select.EPOLLOUT:  # readable, or an error/hangup to read
                        mask |= selectors.EVENT_READ
                    if event & ~select.EPOLLIN:
                        mask |= selectors.EVENT_WRITE
                    handler[1](mask)
                else:
                    handler[1]()
            except Exception:  # noqa: BLE001 - the last-resort guard; _unexpected logs it
                self._unexpected(handler[1])

    def _run_due(self, now: float) -> float | None:
        """Timers and housekeeping that are due; returns the core's next deadline."""
        device = self.device
        deadline = device.next_deadline()
        if deadline is not None and deadline <= now:
            try:
                device.on_timer(now)
            except Exception:  # noqa: BLE001 - logged by _unexpected
                self._unexpected(device.on_timer)
            self.flush()
            deadline = device.next_deadline()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_INTERVAL
            self._housekeeping()
        self.flush()  # what a configuration call produced (a keepalive), if anything
        return deadline

    def _follow_mtu(self) -> None:
        """Pad to the interface's MTU as it is now (the kernel and wireguard-go follow it too):
        padding to a larger, stale MTU would make full-size datagrams too big for the path the
        operator sized the MTU for."""
        mtu = self.tun.current_mtu()
        if mtu and mtu != self.device.mtu:
            log.debug("MTU of the interface is now %d", mtu)
            self.device.mtu = mtu

    def _housekeeping(self) -> None:
        if self._link_events is None:
            self._follow_mtu()
        # the core stamps handshake initiations (TAI64N) with now + wall_offset; follow the
        # wall clock when it is set
        self.device.wall_offset = self.wall_clock() - self.clock()
        if log.isEnabledFor(logging.DEBUG):
            drops = self.device.drops
            if drops:
                delta = collections.Counter(drops)
                delta.subtract(self._last_drops)
                for reason, count in delta.items():
                    if count > 0:
                        log.debug("dropped %d: %s", count, reason.value)
                self._last_drops = collections.Counter(drops)
            send_errors = self.net.send_errors
            if send_errors != self._last_send_errors:
                log.debug("failed to send %d datagrams", send_errors - self._last_send_errors)
                self._last_send_errors = send_errors
        events = self.device.take_events()
        if events and log.isEnabledFor(logging.DEBUG):
            # a peer's repr is a public-key fingerprint, never key material
            for event in events:
                log.debug("%r: %s", event.peer, event.kind.value)
        for callback in self.on_housekeeping:
            try:
                callback()
            except Exception:  # noqa: BLE001 - logged by _unexpected
                self._unexpected(callback)

    def close(self) -> None:
        for events in (self._route_events, self._link_events):
            if events is not None:
                events.close()
        self._route_events = self._link_events = None
        if self._source_checker is not None:
            self._source_checker.close()
            self._source_checker = None
        self._epoll.close()
        self._handlers.clear()
        if self._signal_socks is not None:
            signal.set_wakeup_fd(-1)
            for s in self._signal_socks:
                s.close()
            self._signal_socks = None


def _name_of(callback: object) -> str:
    func = getattr(callback, "func", callback)  # a functools.partial: name what it calls
    return getattr(func, "__qualname__", None) or type(func).__name__


# A core bug that raises on every datagram would log a traceback per datagram: bound it.
_core_faults = RateLimitedLog(log, time.monotonic)


def _feed(batch_entry: Callable[[Any, float], None], items: list, now: float, what: str) -> None:
    """Hand `items` to a batch entry point of the core. The core must not raise on input; if
    it does (a bug), the item that raised is logged and skipped and the rest of the batch still
    goes in: the core iterates the same iterator, which has moved past that item."""
    remaining = iter(items)
    while True:
        try:
            batch_entry(remaining, now)
            return
        except Exception as e:  # noqa: BLE001 - logged, traceback included
            _core_faults.log(logging.ERROR, (what, type(e)), "core raised on %s", what,
                             exc_info=True)
