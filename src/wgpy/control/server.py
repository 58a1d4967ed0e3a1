"""The UAPI server: wireguard-go's configuration protocol on /var/run/wireguard/IFNAME.sock.

Protocol (https://www.wireguard.com/xplatform/), as wireguard-go serves it:
- A connection carries any number of requests, one after another.
- `get=1\\n\\n` is answered with the device's `key=value` lines and then `errno=0\\n\\n`.
  A character other than the blank line after `get=1` is answered `errno=-22` (EINVAL).
- `set=1\\n` is followed by `key=value` lines up to a blank line; the answer is `errno=0\\n\\n`
  or `errno=-N\\n\\n` with N a Linux errno (EINVAL, EPROTO, EADDRINUSE ...). If the client
  closes its side before the blank line, what arrived is applied (as wireguard-go's scanner
  does at EOF).
- Any other first line closes the connection without an answer.
- wgpy only: `wgpy_stats=1\n\n` is answered like a get, with `drop_<reason>=<count>` lines
  (control/stats.py). wireguard-go closes the connection on it, so a client tells support apart
  and the real `wg`, which never sends it, sees nothing new.

The whole request is parsed before anything is applied (see control/apply.py), so a refused
request changes nothing. The listening socket is non-blocking and served by the device's event
loop: no threads. The socket directory is created 0755 and the socket 0700 (umask 077 around
bind), and a stale socket left by a dead daemon is replaced, a live one refused.

The server shares the loop with the data plane, so every connection's cost is bounded:
- at most MAX_CONNECTIONS at once; a new one beyond that, or one that finds the process out of
  descriptors (EMFILE/ENFILE), closes the connection idle the longest if it has been idle for
  EVICT_AFTER, else the listener is left alone (not polled) until a connection closes or
  ACCEPT_BACKOFF has passed: a level-triggered listener that cannot be accepted from would
  otherwise wake the loop for nothing, as fast as it can;
- a connection that moves no byte either way for IDLE_TIMEOUT is closed;
- no new request is started while more than OUTPUT_HIGH_WATER bytes of answers wait to be
  read, and nothing more is read meanwhile (a client that pipelines gets but never reads);
- the end of a request is searched for only in the bytes that arrived since the last search;
- at most READS_PER_EVENT chunks are read per wake-up, so one fast writer cannot hold the loop.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import selectors
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from wgpy.control.uapi import SOCKET_DIRECTORY, socket_path
from wgpy.io.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from wgpy.control.apply import NetControl
    from wgpy.core.device import Device

log = logging.getLogger("wgpy.control.server")

MAX_REQUEST = 256 << 20  # a set of 10,000 peers is a few MB; beyond this, hang up
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 10.0  # seconds without a byte either way
EVICT_AFTER = 1.0  # seconds idle before a connection may be closed to make room
ACCEPT_BACKOFF = 0.5  # seconds the listener rests after accept found no room
OUTPUT_HIGH_WATER = 1 << 20  # bytes of unread answers before requests wait
READS_PER_EVENT = 16
_READ_SIZE = 65536
# accept failures that mean "no room now" (descriptors or kernel memory), not "this one failed"
_NO_ROOM_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept failures of the one connection being accepted (the client gave up, a security module)
_ONE_CONNECTION_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})


_KEYLIKE = re.compile(r"[0-9A-Za-z+/]{16,}={0,2}")


def _redact(text: str) -> str:
    """Logs never carry key material: long hex/base64 runs are cut out of logged text."""
    return _KEYLIKE.sub("[redacted]", text)


class UapiHandler(Protocol):
    def handle_get(self) -> str:
        """The whole answer to a get: `key=value\\n` lines and the final `errno=0\\n\\n`."""
        ...

    def handle_set(self, body: str) -> int:
        """Apply a set body (lines, each ending in \\n, no blank line); 0 or a positive errno."""
        ...


class Loop(Protocol):
    on_housekeeping: list[Callable[[], None]]  # called about once a second

    def set_events(self, fileobj: Any, events: int, callback: Callable[[int], None]) -> None: ...
    def remove(self, fileobj: Any) -> None: ...


def open_uapi_socket(ifname: str, directory: str = SOCKET_DIRECTORY) -> socket.socket:
    """Create and listen on IFNAME.sock; a stale socket file is replaced, a live one refused."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = socket_path(ifname, directory)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        try:
            listener.bind(path)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # nobody listens: stale
                listener.bind(path)
            else:
                raise OSError(errno.EADDRINUSE, "unix socket in use") from None
            finally:
                probe.close()
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    finally:
        os.umask(old_umask)
    return listener


class _Connection:
    __slots__ = ("closed", "closing", "eof", "inbuf", "last_active", "line_end", "outbuf",
                 "scanned", "sock")

    def __init__(self, sock: socket.socket, now: float = 0.0) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False
        self.closing = False
        self.closed = False
        self.last_active = now  # the last byte moved either way
        # where the request in inbuf stands: its first line ends at line_end (-1: not yet
        # seen); inbuf[:scanned] holds no end of what is being waited for
        self.line_end = -1
        self.scanned = 0

    def consumed(self, count: int) -> None:
        """The first `count` bytes were one request: the next one starts fresh."""
        del self.inbuf[:count]
        self.line_end = -1
        self.scanned = 0


class UapiServer:
    """Serves `listener` on `loop`, answering with `handler`."""

    def __init__(self, listener: socket.socket, path: str, handler: UapiHandler,
                 loop: Loop, clock: Callable[[], float] = time.monotonic) -> None:
        self.listener = listener
        self.path = path
        self.handler = handler
        self.loop = loop
        self.clock = clock
        self.connections: dict[int, _Connection] = {}
        self._resume_at: float | None = None  # the listener rests until then
        self._faults = RateLimitedLog(log, clock)
        listener.setblocking(False)
        self._inode: tuple[int, int] | None = None
        self._gone = False
        if path:
            try:
                st = os.stat(path)
                self._inode = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                self._gone = True  # deleted before we got here: as good as deleted later
        loop.set_events(listener, selectors.EVENT_READ, self._on_accept)
        loop.on_housekeeping.append(self.housekeeping)

    # --- lifecycle -----------------------------------------------------------------------

    def socket_still_ours(self) -> bool:
        """False once our socket file was deleted or replaced (wireguard-go then exits)."""
        if self._gone:
            return False
        if self._inode is None:
            return True
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._inode

    def close(self) -> None:
        if self.housekeeping in self.loop.on_housekeeping:
            self.loop.on_housekeeping.remove(self.housekeeping)
        self._resume_at = -1.0  # closing connections must not re-arm the listener
        for conn in list(self.connections.values()):
            self._close(conn)
        self.loop.remove(self.listener)
        if self.socket_still_ours():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.listener.close()

    # --- events ----------------------------------------------------------------------------

    def housekeeping(self) -> None:
        """Close idle connections; let a resting listener try again."""
        now = self.clock()
        for conn in list(self.connections.values()):
            if now - conn.last_active >= IDLE_TIMEOUT:
                log.debug("UAPI connection idle for %.0f s; closing it", IDLE_TIMEOUT)
                self._close(conn)
        if self._resume_at is not None and 0 <= self._resume_at <= now:
            self._resume()

    def _on_accept(self, _mask: int) -> None:
        for attempt in range(64):
            if len(self.connections) >= MAX_CONNECTIONS:
                if attempt:
                    return  # another may not be waiting: the next wake-up says so
                if not self._evict_idle():
                    self._rest(f"{MAX_CONNECTIONS} connections open")
                    return
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _ONE_CONNECTION_ERRNOS:
                    continue
                if e.errno in _NO_ROOM_ERRNOS and self._evict_idle():
                    continue
                self._rest(e.strerror or str(e))  # anything else: not at loop speed either
                return
            sock.setblocking(False)
            conn = _Connection(sock, self.clock())
            self.connections[sock.fileno()] = conn
            self.loop.set_events(sock, selectors.EVENT_READ, functools.partial(self._on_ready, conn))

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest, if it has been idle for EVICT_AFTER."""
        if not self.connections:
            return False
        oldest = min(self.connections.values(), key=lambda conn: conn.last_active)
        if self.clock() - oldest.last_active < EVICT_AFTER:
            return False
        log.debug("UAPI: closing the connection idle the longest to make room")
        self._close(oldest)
        return True

    def _rest(self, why: str) -> None:
        """Stop polling the listener until a connection closes or ACCEPT_BACKOFF passed."""
        if self._resume_at is None:
            self._faults.log(logging.ERROR, why, "UAPI cannot accept connections now (%s); "
                             "retrying in a moment", why)
            self.loop.remove(self.listener)
        self._resume_at = self.clock() + ACCEPT_BACKOFF

    def _resume(self) -> None:
        self._resume_at = None
        self.loop.set_events(self.listener, selectors.EVENT_READ, self._on_accept)

    def _on_ready(self, conn: _Connection, mask: int) -> None:
        if mask & selectors.EVENT_READ and not conn.eof and len(conn.outbuf) <= OUTPUT_HIGH_WATER:
            try:
                for _ in range(READS_PER_EVENT):
                    chunk = conn.sock.recv(_READ_SIZE)
                    if not chunk:
                        conn.eof = True
                        break
                    conn.inbuf += chunk
                    conn.last_active = self.clock()
                    if len(conn.inbuf) > MAX_REQUEST:
                        log.error("UAPI request too large; closing the connection")
                        self._close(conn)
                        return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(conn)
                return
            self._process(conn)
            if conn.closed:
                return
        if mask & selectors.EVENT_WRITE or conn.outbuf:
            self._write(conn)

    def _process(self, conn: _Connection) -> None:
        buf = conn.inbuf
        while not conn.closing and len(conn.outbuf) <= OUTPUT_HIGH_WATER:
            newline = conn.line_end
            if newline < 0:
                newline = buf.find(b"\n", conn.scanned)
                if newline < 0:
                    conn.scanned = len(buf)
                    break
                conn.line_end = conn.scanned = newline
            operation = bytes(buf[: newline + 1])
            if operation == b"get=1\n":
                if len(buf) < newline + 2:
                    break
                following = buf[newline + 1]
                conn.consumed(newline + 2)
                if following != 0x0A:
                    log.error("UAPI: trailing character in get")
                    self._answer(conn, errno.EINVAL)
                    continue
                try:
                    text = self.handler.handle_get()
                except Exception:
                    log.exception("UAPI get failed")
                    self._answer(conn, errno.EIO)  # unexpected; never kill the loop
                    continue
                conn.outbuf += text.encode()
            elif operation == b"wgpy_stats=1\n" and hasattr(self.handler, "handle_stats"):
                if len(buf) < newline + 2:
                    break
                following = buf[newline + 1]
                conn.consumed(newline + 2)
                if following != 0x0A:
                    self._answer(conn, errno.EINVAL)
                    continue
                try:
                    conn.outbuf += self.handler.handle_stats().encode()
                except Exception:
                    log.exception("UAPI wgpy_stats failed")
                    self._answer(conn, errno.EIO)
            elif operation == b"set=1\n":
                if buf[newline + 1 : newline + 2] == b"\n":
                    body_end, consumed = newline + 1, newline + 2
                else:
                    # resume where the last search ended, one byte back: "\n" + "\n" may
                    # straddle two reads
                    terminator = buf.find(b"\n\n", conn.scanned - 1)
                    if terminator < 0:
                        if not conn.eof:
                            conn.scanned = len(buf)
                            break
                        body_end, consumed = len(buf), len(buf)  # EOF ends the request
                    else:
                        body_end, consumed = terminator + 1, terminator + 2
                body = bytes(buf[newline + 1 : body_end])
                conn.consumed(consumed)
                self._answer(conn, self._set(body))
            else:
                # only the name: a misframed request can make a key line the "operation"
                name = operation.split(b"=", 1)[0][:32].decode("ascii", "replace")
                log.error("invalid UAPI operation: %s (%d bytes)", _redact(name),
                          len(operation))
                conn.closing = True
                conn.consumed(len(buf))
        if (conn.eof or conn.closing) and not conn.outbuf:
            self._close(conn)

    def _set(self, body: bytes) -> int:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return errno.EPROTO
        try:
            return self.handler.handle_set(text)
        except Exception:
            log.exception("UAPI set failed")
            return 55  # ENOANO: wireguard-go's IpcErrorUnknown

    def _answer(self, conn: _Connection, errno_value: int) -> None:
        conn.outbuf += b"errno=%d\n\n" % (-abs(errno_value))

    def _write(self, conn: _Connection) -> None:
        if conn.closed:
            return
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del conn.outbuf[:sent]
            conn.last_active = self.clock()
            if conn.inbuf and len(conn.outbuf) <= OUTPUT_HIGH_WATER:
                self._process(conn)  # requests held back while the answers piled up
                if conn.closed:
                    return
        if conn.outbuf:
            # after EOF only writability matters (a readable EOF would spin the loop), and
            # while answers pile up nothing more is read
            events = selectors.EVENT_WRITE if conn.eof or len(conn.outbuf) > OUTPUT_HIGH_WATER \
                else selectors.EVENT_READ | selectors.EVENT_WRITE
            self.loop.set_events(conn.sock, events, functools.partial(self._on_ready, conn))
        elif conn.closing or conn.eof:
            self._close(conn)
        else:
            self.loop.set_events(conn.sock, selectors.EVENT_READ,
                                 functools.partial(self._on_ready, conn))

    def _close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        fd = conn.sock.fileno()
        if fd >= 0:
            self.loop.remove(conn.sock)
            self.connections.pop(fd, None)
        conn.sock.close()
        if self._resume_at is not None and self._resume_at >= 0:
            self._resume()  # a descriptor and a slot are free again


class DeviceUapi:
    """The UapiHandler for a Device: the codec plus control/apply.py."""

    def __init__(self, device: Device, net: NetControl | None, clock: Callable[[], float],
                 wall_clock_of: Callable[[float | None], tuple[int, int]],
                 after_set: Callable[[], None] | None = None) -> None:
        self.device = device
        self.net = net
        self.clock = clock  # the core's monotonic `now`
        self.wall_clock_of = wall_clock_of  # a monotonic instant as get=1 reports it
        self.after_set = after_set  # e.g. flush the keepalives a set produced

    def handle_get(self) -> str:
        from wgpy.control.apply import device_state
        from wgpy.control.uapi import format_get

        return format_get(device_state(self.device, self.wall_clock_of))

    def handle_stats(self) -> str:
        from wgpy.control.stats import format_stats

        return format_stats(self.device.drops)

    def handle_set(self, body: str) -> int:
        from wgpy.control.apply import ApplyError, apply_set
        from wgpy.control.uapi import UapiError, parse_set

        try:
            request = parse_set(body)
        except UapiError as e:
            log.error("UAPI set refused: %s", _redact(str(e)))
            return abs(e.errno)
        try:
            apply_set(self.device, request, self.net, self.clock())
        except ApplyError as e:
            log.error("UAPI set refused: %s", _redact(str(e)))
            return e.errno
        finally:
            if self.after_set is not None:
                self.after_set()
        return 0
