"""wgpy-daemon: a userspace WireGuard interface with wireguard-go's command contract.

    wgpy-daemon [-f|--foreground] IFNAME

Creates the TUN interface IFNAME (MTU 1420), serves the UAPI on /var/run/wireguard/IFNAME.sock
and runs the device. Without -f (or WG_PROCESS_FOREGROUND=1) it backgrounds the way
wireguard-go does: this process creates the interface and the listening socket, then starts a
detached copy of itself that inherits both (WG_TUN_FD, WG_UAPI_FD) and returns. So when the
command returns, the interface exists and the socket accepts connections; `wg setconf` right
after cannot miss it. The copy's stdio is /dev/null unless LOG_LEVEL asks for logs.

LOG_LEVEL=verbose|debug|error|silent (default error), as wireguard-go. WGPY_UDP_OFFLOAD=0 turns
off UDP GSO/GRO and WGPY_TUN_GRO=0 the coalesced TUN writes (all on when the kernel has them).
Exit status as wireguard-go: 0 after a clean run or after printing the usage, 1 when setup
fails.
The daemon exits, removing its socket, on SIGTERM/SIGINT, when the interface is deleted and
when its socket file is deleted.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

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


def _usage(program: str) -> None:
    print(f"Usage: {program} [-f/--foreground] INTERFACE-NAME")


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
    if len(argv) == 2 and argv[1] == "--version":
        from wgpy import __version__

        print(f"wgpy-daemon v{__version__}\n\nUserspace WireGuard daemon in Python.")
        return EXIT_SETUP_SUCCESS
    parsed = _parse_args(argv)
    if parsed is None or not parsed[1]:
        _usage(program)
        return EXIT_SETUP_SUCCESS  # wireguard-go prints the usage and exits 0
    foreground, ifname = parsed
    foreground = foreground or os.environ.get(ENV_FOREGROUND) == "1"
    # From here on a SIGTERM/SIGINT must not kill us before the cleanup code is in place (the
    # loop takes them over later); one that arrives early ends the daemon as soon as it runs.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _record_early_signal)
    level = _log_level()
    _setup_logging(ifname, level)

    from wgpy.control.server import open_uapi_socket, socket_path
    from wgpy.io.tun_linux import TunDevice

    try:
        if os.environ.get(ENV_TUN_FD):
            tun = TunDevice.from_fd(int(os.environ[ENV_TUN_FD]))
        else:
            # IFF_VNET_HDR lets the loop write coalesced TCP super-packets (WGPY_TUN_GRO=0: off)
            tun_gro = os.environ.get("WGPY_TUN_GRO", "1") != "0"
            tun = TunDevice.create(ifname, DEFAULT_MTU, vnet_hdr=tun_gro)
        ifname = tun.name
    except (OSError, ValueError) as e:
        log.error("Failed to create TUN device: %s", e)
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
    from wgpy.io.entropy import BufferedRandom
    from wgpy.io.loop import DeviceLoop
    from wgpy.io.udp import UdpBind

    log.debug("Starting wgpy-daemon")
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
    loop = DeviceLoop(device, tun, net, clock=time.monotonic)
    handler = DeviceUapi(device, loop, time.monotonic, after_set=loop.flush)
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
