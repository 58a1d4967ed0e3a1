"""wgpy-daemon: a userspace WireGuard interface with wireguard-go's command contract.

    wgpy-daemon [-f|--foreground] IFNAME
    wgpy-daemon --help | -h | --version

Creates the TUN interface IFNAME (MTU 1420), serves the UAPI on /var/run/wireguard/IFNAME.sock
and runs the device. Without -f (or WG_PROCESS_FOREGROUND=1) it backgrounds the way
wireguard-go does: this process creates the interface and the listening socket, then starts a
detached copy of itself that inherits both (WG_TUN_FD, WG_UAPI_FD) and returns. So when the
command returns, the interface exists and the socket accepts connections; `wg setconf` right
after cannot miss it. The copy's stdio is /dev/null unless LOG_LEVEL asks for logs.

LOG_LEVEL=verbose|debug|error|silent (default error), as wireguard-go. WGPY_UDP_OFFLOAD=0 turns
off UDP GSO/GRO and WGPY_TUN_GRO=0 the coalesced TUN writes (all on when the kernel has them);
WGPY_TUN_TSO=0/1 turns TSO reads from the TUN off/on (default: on with the C fast path).
Exit status as wireguard-go: 0 after a clean run or after printing the usage (also for
--help/-h) or version, 1 when setup fails. Setup refusals go to stderr whatever LOG_LEVEL
says: an argument starting with '-' (never taken for an interface name), a name Linux
refuses (saying why), a name a running daemon already serves ("already running as PID N").
The daemon exits, removing its socket, on SIGTERM/SIGINT, when the interface is deleted and
when its socket file is deleted.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, TextIO

from wgpy.constants import DEFAULT_MTU

if TYPE_CHECKING:
    from wgpy.io.tun_linux import TunDevice

EXIT_SETUP_SUCCESS = 0
EXIT_SETUP_FAILED = 1
ENV_TUN_FD = "WG_TUN_FD"
ENV_UAPI_FD = "WG_UAPI_FD"
ENV_FOREGROUND = "WG_PROCESS_FOREGROUND"

log = logging.getLogger("wgpy.daemon")


_early_signals: list[int] = []


def _record_early_signal(signum: int, _frame: object) -> None:
    _early_signals.append(signum)


def _usage(program: str, file: TextIO | None = None) -> None:
    print(f"Usage: {program} [-f/--foreground] INTERFACE-NAME", file=file or sys.stdout)


def _name_problem(name: str) -> str | None:
    """Why Linux would refuse name for an interface (its dev_valid_name), or None."""
    if "/" in name:
        return f"interface name `{name}' contains '/', which interface names cannot have"
    if any(c.isspace() or c == ":" for c in name):
        return f"interface name `{name}' contains whitespace or ':', which interface names cannot have"
    if name in (".", ".."):
        return f"`{name}' cannot be an interface name"
    if len(name.encode()) > 15:
        return f"interface name `{name}' is {len(name.encode())} bytes long; at most 15 are allowed"
    return None


def _listening_pid(path: str) -> int | None:
    """The PID of a process holding the listening unix socket bound to path (from
    /proc/net/unix and /proc/PID/fd), or None if there is none or it cannot be told."""
    inodes = set()
    try:
        with open("/proc/net/unix") as table:
            next(table, None)
            for line in table:
                fields = line.split()
                if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
                    inodes.add(f"socket:[{fields[6]}]")
    except (OSError, ValueError):
        return None
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry.name}/fd/{fd}") in inodes:
                    return int(entry.name)
            except OSError:
                continue
    return None


def _already_running(ifname: str) -> str | None:
    """A message if a daemon already serves ifname (its UAPI socket accepts connections)."""
    from wgpy.control.uapi import socket_path

    path = socket_path(ifname)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except OSError:
        return None
    finally:
        probe.close()
    pid = _listening_pid(path)
    who = f"as PID {pid}" if pid is not None else f"(its socket {path} is live)"
    return f"{ifname}: already running {who}"


def _log_level() -> int | None:
    """The logging level for LOG_LEVEL; None for silent."""
    value = os.environ.get("LOG_LEVEL", "")
    if value in ("verbose", "debug"):
        return logging.DEBUG
    if value == "silent":
        return None
    return logging.ERROR


def _setup_logging(ifname: str, level: int | None) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(f"%(levelname)s: ({ifname}) %(asctime)s %(message)s",
                          "%Y/%m/%d %H:%M:%S")
    )
    root = logging.getLogger("wgpy")
    root.handlers[:] = [handler]
    root.setLevel(level if level is not None else logging.CRITICAL + 1)
    root.propagate = False


def _parse_args(argv: list[str]) -> tuple[bool, str] | None:
    if len(argv) == 2 and argv[1] in ("-f", "--foreground"):
        return True, ""  # missing name
    if len(argv) == 3 and argv[1] in ("-f", "--foreground"):
        return True, argv[2]
    if len(argv) == 2:
        return False, argv[1]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    program = os.path.basename(argv[0]) if argv else "wgpy-daemon"
    if program in ("__main__.py", "daemon.py", "-m"):
        program = "wgpy-daemon"
    if len(argv) == 2 and argv[1] in ("--version", "-v"):
        from wgpy import __version__

        print(f"wgpy-daemon v{__version__}\n\nUserspace WireGuard daemon in Python.")
        return EXIT_SETUP_SUCCESS
    if len(argv) == 2 and argv[1] in ("--help", "-h"):
        _usage(program)
        return EXIT_SETUP_SUCCESS
    parsed = _parse_args(argv)
    if parsed is None or not parsed[1]:
        _usage(program)
        return EXIT_SETUP_SUCCESS  # wireguard-go prints the usage and exits 0
    foreground, ifname = parsed
    # Unlike wireguard-go, an option is never taken for an interface name (`--help` would
    # otherwise become an interface).
    inherited = bool(os.environ.get(ENV_UAPI_FD))  # the backgrounded copy: the socket is ours
    problem = (f"unknown option `{ifname}'" if ifname.startswith("-")
               else _name_problem(ifname) or (None if inherited else _already_running(ifname)))
    if problem is not None:
        print(f"{program}: {problem}", file=sys.stderr)
        if ifname.startswith("-"):
            _usage(program, sys.stderr)
        return EXIT_SETUP_FAILED
    foreground = foreground or os.environ.get(ENV_FOREGROUND) == "1"
    # From here on a SIGTERM/SIGINT must not kill us before the cleanup code is in place (the
    # loop takes them over later); one that arrives early ends the daemon as soon as it runs.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _record_early_signal)
    level = _log_level()
    _setup_logging(ifname, level)

    from wgpy.control.server import open_uapi_socket
    from wgpy.control.uapi import socket_path
    from wgpy.io.tun_linux import TunDevice

    try:
        if os.environ.get(ENV_TUN_FD):
            tun = TunDevice.from_fd(int(os.environ[ENV_TUN_FD]))
        else:
            # IFF_VNET_HDR lets the loop write coalesced TCP super-packets (WGPY_TUN_GRO=0: off)
            tun_gro = os.environ.get("WGPY_TUN_GRO", "1") != "0"
            tun = TunDevice.create(ifname, DEFAULT_MTU, vnet_hdr=tun_gro)
        ifname = tun.name
    except OSError as e:
        if e.errno == errno.EBUSY:
            print(f"{program}: {ifname}: the interface exists and another program holds it",
                  file=sys.stderr)
        else:
            print(f"{program}: {ifname}: cannot create the TUN device: {e.strerror or e}",
                  file=sys.stderr)
        return EXIT_SETUP_FAILED
    except ValueError as e:
        print(f"{program}: {ifname}: cannot create the TUN device: {e}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    try:
        if os.environ.get(ENV_UAPI_FD):
            fd = int(os.environ[ENV_UAPI_FD])
            listener = socket.socket(fileno=fd)
            os.set_inheritable(fd, False)
        else:
            listener = open_uapi_socket(ifname)
    except (OSError, ValueError) as e:
        log.error("UAPI listen error: %s", e)
        return EXIT_SETUP_FAILED

    if not foreground:
        return _daemonize(argv, tun.fileno(), listener.fileno(), level)
    return run_foreground(ifname, tun, listener, socket_path(ifname))


def _daemonize(argv: list[str], tun_fd: int, uapi_fd: int, level: int | None) -> int:
    env = dict(os.environ)
    env[ENV_TUN_FD] = str(tun_fd)
    env[ENV_UAPI_FD] = str(uapi_fd)
    env[ENV_FOREGROUND] = "1"
    keep_output = bool(os.environ.get("LOG_LEVEL")) and level is not None
    output = None if keep_output else subprocess.DEVNULL
    try:
        subprocess.Popen(
            [sys.executable, "-m", "wgpy.cli.daemon", *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            pass_fds=(tun_fd, uapi_fd),
            env=env,
            cwd="/",
            start_new_session=True,
        )
    except OSError as e:
        log.error("Failed to daemonize: %s", e)
        return EXIT_SETUP_FAILED
    return EXIT_SETUP_SUCCESS


def run_foreground(ifname: str, tun: TunDevice, listener: socket.socket, path: str) -> int:
    """Serve until stopped. Whatever happens, our socket file is removed and the TUN closed
    (closing the last fd of a non-persistent TUN deletes the interface)."""
    try:
        st = os.stat(path)
        socket_identity = (st.st_dev, st.st_ino)
    except OSError:
        socket_identity = None
    try:
        return _serve(tun, listener, path)
    finally:
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == socket_identity:
                os.unlink(path)
        except OSError:
            pass
        listener.close()
        tun.close()


def _serve(tun: TunDevice, listener: socket.socket, path: str) -> int:
    from wgpy import fastpath
    from wgpy.control.server import DeviceUapi, UapiServer
    from wgpy.core.device import Device
    from wgpy.io.clock import wall_clock_of
    from wgpy.io.entropy import BufferedRandom
    from wgpy.io.loop import DeviceLoop
    from wgpy.io.udp import UdpBind

    log.debug("Starting wgpy-daemon")
    fastpath.select_from(os.environ)  # before any key is made: WGPY_PURE=1 is pure Python
    log.info("Per-packet fast path: %s", fastpath.DESCRIPTION)
    device = Device(rng=BufferedRandom())
    # UDP GSO/GRO are used when the kernel has them; WGPY_UDP_OFFLOAD=0 turns them off
    # (for comparisons and for kernels that misbehave)
    offload = os.environ.get("WGPY_UDP_OFFLOAD", "1") != "0"
    net = UdpBind(want_gso=offload, want_gro=offload)
    try:
        device.listen_port = net.open(0)
    except OSError as e:
        log.error("Failed to bind UDP: %s", e)
        return EXIT_SETUP_FAILED
    # TSO super-packets read from the TUN (tun_linux.py; needs the vnet header of WGPY_TUN_GRO)
    tso_default = "1" if fastpath.IMPLEMENTATION == "c" else "0"
    if os.environ.get("WGPY_TUN_TSO", tso_default) == "1":
        from wgpy.io.tun_linux import TSO_OFFLOADS
        log.info("TUN TSO reads: %s", "on" if tun.set_offloads(TSO_OFFLOADS) else "refused")
    loop = DeviceLoop(device, tun, net, clock=time.monotonic)
    try:
        loop.watch_route_events()
    except OSError as e:
        log.warning("Cannot follow link and route changes (%s); polling the MTU", e.strerror)
    handler = DeviceUapi(device, loop, time.monotonic, wall_clock_of, after_set=loop.flush)
    server = UapiServer(listener, path, handler, loop)

    def check_socket() -> None:
        if not server.socket_still_ours():
            loop.stop("UAPI socket removed")

    loop.on_housekeeping.append(check_socket)
    loop.install_signal_handlers()
    if _early_signals:
        loop.stop(signal.Signals(_early_signals[0]).name)
    log.debug("Device started")
    log.debug("UAPI listener started")
    try:
        reason = loop.run()
    finally:
        server.close()
        net.close()
        loop.close()
    log.debug("Shutting down (%s)", reason)
    return EXIT_SETUP_SUCCESS


if __name__ == "__main__":
    sys.exit(main())
