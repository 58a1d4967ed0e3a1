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
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import selectors
import socket
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("wgpy.control.server")

SOCKET_DIRECTORY = "/var/run/wireguard"
MAX_REQUEST = 256 << 20  # a set of 10,000 peers is a few MB; beyond this, hang up
_READ_SIZE = 65536


_KEYLIKE = re.compile(r"[0-9A-Za-z+/]{16,}={0,2}")


def _redact(text: str) -> str:
    """Logs never carry key material: long hex/base64 runs are cut out of logged text."""
    return _KEYLIKE.sub("[redacted]", text)


def socket_path(ifname: str, directory: str = SOCKET_DIRECTORY) -> str:
    return os.path.join(directory, f"{ifname}.sock")


class UapiHandler(Protocol):
    def handle_get(self) -> str:
        """The whole answer to a get: `key=value\\n` lines and the final `errno=0\\n\\n`."""
        ...

    def handle_set(self, body: str) -> int:
        """Apply a set body (lines, each ending in \\n, no blank line); 0 or a positive errno."""
        ...


class Loop(Protocol):
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
    __slots__ = ("closing", "eof", "inbuf", "outbuf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False
        self.closing = False


class UapiServer:
    """Serves `listener` on `loop`, answering with `handler`."""

    def __init__(self, listener: socket.socket, path: str, handler: UapiHandler,
                 loop: Loop) -> None:
        self.listener = listener
        self.path = path
        self.handler = handler
        self.loop = loop
        self.connections: dict[int, _Connection] = {}
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

    def _on_accept(self, _mask: int) -> None:
        for _ in range(64):
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: try again on the next event
                log.error("UAPI accept failed: %s", e.strerror)
                return
            sock.setblocking(False)
            conn = _Connection(sock)
            self.connections[sock.fileno()] = conn
            self.loop.set_events(sock, selectors.EVENT_READ, functools.partial(self._on_ready, conn))

    def _on_ready(self, conn: _Connection, mask: int) -> None:
        if mask & selectors.EVENT_READ and not conn.eof:
            try:
                while True:
                    chunk = conn.sock.recv(_READ_SIZE)
                    if not chunk:
                        conn.eof = True
                        break
                    conn.inbuf += chunk
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
        if mask & selectors.EVENT_WRITE or conn.outbuf:
            self._write(conn)

    def _process(self, conn: _Connection) -> None:
        buf = conn.inbuf
        while not conn.closing:
            newline = buf.find(b"\n")
            if newline < 0:
                break
            operation = bytes(buf[: newline + 1])
            if operation == b"get=1\n":
                if len(buf) < newline + 2:
                    break
                following = buf[newline + 1]
                del buf[: newline + 2]
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
                del buf[: newline + 2]
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
                    terminator = buf.find(b"\n\n", newline)
                    if terminator < 0:
                        if not conn.eof:
                            break
                        body_end, consumed = len(buf), len(buf)  # EOF ends the request
                    else:
                        body_end, consumed = terminator + 1, terminator + 2
                body = bytes(buf[newline + 1 : body_end])
                del buf[:consumed]
                self._answer(conn, self._set(body))
            else:
                # only the name: a misframed request can make a key line the "operation"
                name = operation.split(b"=", 1)[0][:32].decode("ascii", "replace")
                log.error("invalid UAPI operation: %s (%d bytes)", _redact(name),
                          len(operation))
                conn.closing = True
                buf.clear()
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
        if conn.sock.fileno() < 0:
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
        if conn.outbuf:
            # after EOF only writability matters (a readable EOF would spin the loop)
            events = selectors.EVENT_WRITE if conn.eof else (
                selectors.EVENT_READ | selectors.EVENT_WRITE)
            self.loop.set_events(conn.sock, events, functools.partial(self._on_ready, conn))
        elif conn.closing or conn.eof:
            self._close(conn)
        else:
            self.loop.set_events(conn.sock, selectors.EVENT_READ,
                                 functools.partial(self._on_ready, conn))

    def _close(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.loop.remove(conn.sock)
            self.connections.pop(fd, None)
        conn.sock.close()


class DeviceUapi:
    """The UapiHandler for a Device: the codec plus control/apply.py."""

    def __init__(self, device: Any, net: Any, clock: Callable[[], float],
                 after_set: Callable[[], None] | None = None) -> None:
        self.device = device
        self.net = net
        self.clock = clock
        self.after_set = after_set  # e.g. flush the keepalives a set produced

    def handle_get(self) -> str:
        from wgpy.control.apply import device_state
        from wgpy.control.uapi import format_get

        return format_get(device_state(self.device))

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
