"""Talking to WireGuard devices: the UAPI unix socket (wireguard-go, wgpy-daemon) and, through
`control.kernel`, the kernel's generic netlink — chosen per interface the way wg chooses.

Errors: connection problems raise OSError with the errno wg would report (so the CLI can print
strerror like wg's perror); a daemon's non-zero "errno=" raises UapiError.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path
from typing import Protocol

from wgpy.control.uapi import (
    SOCKET_DIRECTORY,
    SOCKET_SUFFIX,
    UapiError,
    format_set,
    parse_get,
    parse_set_response,
    socket_path,
)
from wgpy.model import DeviceState, SetRequest

RESPONSE_LIMIT = 64 * 1024 * 1024  # a get of ~100k peers; anything larger is not a daemon


class DeviceBackend(Protocol):
    def get(self, ifname: str) -> DeviceState: ...

    def set(self, ifname: str, request: SetRequest) -> None: ...

    def list_interfaces(self) -> list[str]: ...


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class UapiClient:
    """A client of the UAPI sockets in `socket_dir` (one connection per request)."""

    def __init__(self, socket_dir: str | os.PathLike[str] = SOCKET_DIRECTORY,
                 timeout: float | None = 30.0) -> None:
        self.socket_dir = Path(socket_dir)
        self.timeout = timeout

    def socket_path(self, ifname: str) -> Path:
        if "/" in ifname:
            raise _oserror(errno.EINVAL)
        return Path(socket_path(ifname, self.socket_dir))

    def _connect(self, ifname: str) -> socket.socket:
        """Like wg's userspace_interface_file: EINVAL for '/', stat errors, EBADF for a
        non-socket, connect errors; a refused socket (daemon gone) is removed."""
        path = self.socket_path(ifname)
        mode = os.stat(path).st_mode
        if not stat.S_ISSOCK(mode):
            raise _oserror(errno.EBADF)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:
            sock.close()
            _unlink_quietly(path)
            raise
        except OSError:
            sock.close()
            raise
        return sock

    def has_interface(self, ifname: str) -> bool:
        """wg's userspace_has_wireguard_interface: a socket file exists for ifname and its
        daemon did not refuse the connection (a refused socket is removed). Other connect
        failures still count as "there is a userspace interface", as in wg."""
        try:
            path = self.socket_path(ifname)
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return False
        except OSError:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(path))
            except ConnectionRefusedError:
                _unlink_quietly(path)
                return False
            except OSError:
                pass
        return True

    def list_interfaces(self) -> list[str]:
        """Interfaces with a live socket, in directory order (as wg lists them)."""
        try:
            entries = os.listdir(self.socket_dir)
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            if len(entry) <= len(SOCKET_SUFFIX) or not entry.endswith(SOCKET_SUFFIX):
                continue
            name = entry[: -len(SOCKET_SUFFIX)]
            if self.has_interface(name):
                names.append(name)
        return names

    def _exchange(self, ifname: str, request: str) -> str:
        with self._connect(ifname) as sock:
            sock.sendall(request.encode())
            return _read_response(sock)

    def get(self, ifname: str) -> DeviceState:
        return parse_get(self._exchange(ifname, "get=1\n\n"))

    def set(self, ifname: str, request: SetRequest) -> None:
        status = parse_set_response(self._exchange(ifname, format_set(request)))
        if status:
            raise UapiError(status, os.strerror(status))

    def drops(self, ifname: str) -> dict[str, int] | None:
        """wgpy's drop counters (control/stats.py); None when the daemon does not answer the
        request (wireguard-go hangs up on it)."""
        from wgpy.control.stats import STATS_REQUEST, parse_stats

        answer = self._exchange(ifname, STATS_REQUEST)
        if not answer:
            return None
        counters, status = parse_stats(answer)
        if status:
            raise UapiError(status, os.strerror(status))
        return counters


def _read_response(sock: socket.socket) -> str:
    """Read up to and including the first blank line (every answer ends "errno=N", blank)."""
    data = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        start = max(0, len(data) - 1)
        data += chunk
        if data.startswith(b"\n") or b"\n\n" in data[start:]:
            break
        if len(data) > RESPONSE_LIMIT:
            raise _oserror(errno.EPROTO)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise _oserror(errno.EPROTO) from None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class DeviceControl:
    """What the wg tool talks to: userspace sockets first, kernel netlink otherwise."""

    def __init__(self, uapi: UapiClient | None = None,
                 kernel: DeviceBackend | None = None) -> None:
        self.uapi = uapi or UapiClient()
        self._kernel = kernel

    @property
    def kernel(self) -> DeviceBackend:
        if self._kernel is None:
            from wgpy.control.kernel import KernelClient

            self._kernel = KernelClient()
        return self._kernel

    def _backend(self, ifname: str) -> DeviceBackend:
        return self.uapi if self.uapi.has_interface(ifname) else self.kernel

    def get(self, ifname: str) -> DeviceState:
        backend = self._backend(ifname)
        if backend is self.uapi:
            return self._uapi_get(ifname)
        return backend.get(ifname)

    def _uapi_get(self, ifname: str) -> DeviceState:
        try:
            return self.uapi.get(ifname)
        except UapiError as err:
            raise _oserror(err.errno) from None

    def set(self, ifname: str, request: SetRequest) -> None:
        backend = self._backend(ifname)
        try:
            backend.set(ifname, request)
        except UapiError as err:
            raise _oserror(err.errno) from None

    def drops(self, ifname: str) -> dict[str, int] | None:
        """Drop counters of a wgpy-daemon; None for other daemons and kernel interfaces."""
        from wgpy.control.stats import StatsError

        if not self.uapi.has_interface(ifname):
            return None
        try:
            return self.uapi.drops(ifname)
        except (OSError, UapiError, StatsError):
            return None

    def list_interfaces(self) -> list[str]:
        """Kernel interfaces first, then userspace ones — wg's order."""
        return [*self.kernel.list_interfaces(), *self.uapi.list_interfaces()]
