"""Shared pieces of the guest tests: a kernel WireGuard link and a wgpy-daemon in namespaces."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from netns import Netns, Topology, WgDump

# Under emulation (TCG) a Python start takes 10-30 s; the harness's 10 s default is for hosts.
DAEMON_START_TIMEOUT = 300.0


def add_kernel_link(topo: Topology, ns: Netns, tag: str = "k") -> str:
    """A `type wireguard` link in ns, removed with the topology."""
    ifname = topo.ifname(tag)
    ns.run(["ip", "link", "add", ifname, "type", "wireguard"])
    topo.links.append((ns, ifname))
    return ifname


def start_wgpy(topo: Topology, ns: Netns, tag: str = "p") -> tuple[str, Any]:
    ifname = topo.ifname(tag)
    process = topo.start_userspace(
        ns, ifname, [sys.executable, "-m", "wgpy.cli.daemon", "-f"],
        timeout=DAEMON_START_TIMEOUT,
    )
    return ifname, process


def handshake_after(topo: Topology, ns: Netns, ifname: str, since: float,
                    timeout: float = 30) -> WgDump:
    """Wait until every peer of ifname has a handshake at or after `since` (unix seconds)."""

    def done() -> WgDump | None:
        dump = topo.wg_dump(ns, ifname)
        peers = dump.peers.values()
        return dump if peers and all(p.latest_handshake >= int(since) for p in peers) else None

    return topo.wait_for(done, timeout=timeout, interval=0.3,
                         message=lambda: f"a handshake on {ifname} after {since:.0f}:\n"
                         + topo.wg(ns, "show", ifname).stdout)


def now() -> float:
    return time.time()


class InProcessRunner:
    """Runs `wg` as a program and wgpy's `main` in this process (a Python start costs 10-30 s
    under emulation), inside a namespace (setns for the call), with argv[0] "wg"."""

    def __init__(self) -> None:
        from test_wg_cli import Runner

        self._wg = Runner(Path("/nonexistent/wgpy"))

    def run(self, tool: str, args: Sequence[str], *, netns: str | None = None,
            env: dict[str, str | None] | None = None, **kwargs: Any) -> Any:
        if tool == "wg":
            return self._wg.run("wg", args, netns=netns, env=env, **kwargs)
        if kwargs:
            raise ValueError(f"in-process wgpy takes no {sorted(kwargs)}")
        return run_wgpy_in_process(args, netns, env or {})


def run_wgpy_in_process(args: Sequence[str], netns: str | None,
                        env: dict[str, str | None]) -> Any:
    from wgpy.cli.wg import main

    wanted = {"WG_COLOR_MODE": "never", "WG_ENDPOINT_RESOLUTION_RETRIES": "0", **env}
    return run_in_process(lambda: main(list(args), prog="wg"), netns, wanted)


def run_quick_in_process(command: str, conf: Path, netns: str,
                         env: dict[str, str | None] | None = None) -> Any:
    """`wgpy-quick COMMAND CONF` in this process, inside netns."""
    from wgpy.cli.wg_quick import main

    return run_in_process(lambda: main([command, str(conf)]), netns, env or {})


def run_in_process(call: Callable[[], int], netns: str | None,
                   wanted: dict[str, str | None]) -> Any:
    """call() with stdout/stderr captured, os.environ updated by `wanted` and the network
    namespace switched to netns (setns) for its duration; a Result."""
    from pyroute2.netns import popns, pushns
    from test_wg_cli import Result

    saved_env = {key: os.environ.get(key) for key in wanted}
    for key, value in wanted.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    out, err = io.BytesIO(), io.BytesIO()
    saved_streams = sys.stdout, sys.stderr
    wrappers = (io.TextIOWrapper(out, encoding="utf-8", write_through=True),
                io.TextIOWrapper(err, encoding="utf-8", write_through=True))
    sys.stdout, sys.stderr = wrappers
    if netns is not None:
        pushns(netns)
    try:
        try:
            status = call()
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        if netns is not None:
            popns()
        sys.stdout, sys.stderr = saved_streams
        for wrapper in wrappers:  # detached, so collecting them does not close the buffers
            wrapper.flush()
            wrapper.detach()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Result(out.getvalue(), err.getvalue(), status)


class HandshakeFlood:
    """A thread sending handshake initiations with a valid mac1 (and no mac2) for the
    responder's public key from bind_ip inside netns, in bursts, until stopped. Enough of them
    put the responder under load, and it then answers initiations without a valid mac2 with
    cookie replies. The socket is made inside netns.

    The kernel is under load while its handshake queue holds 512 messages or more, and for a
    second after it last did (receive.c); at 4,096 it drops what comes, a legitimate
    initiator's messages with the flood's. A burst is one sendmmsg(2) of `burst` messages; the
    next goes out once no more than `low` are unanswered, so the flood keeps between `low`
    and `low + burst` unanswered. After `silence` without a reply, what is unanswered is
    taken as lost and the next burst goes out. The replies are read from a receive buffer
    large enough to lose none.

    Sent straight at the kernel, the flood does not hold its queue deep: each datagram is
    received in the sender's own system call (the softirq runs when it re-enables bottom
    halves), and the kernel's handshake worker, answering on the other CPU, kept up with that
    at times (11,500/s in one emulated run), so its second ran out. Behind `ReleasedInSlots`
    the datagrams reach the kernel in bursts at softirq speed, faster than the worker answers
    them, so the queue is deep at every release."""

    def __init__(self, netns: str, bind_ip: str, target: tuple[str, int],
                 responder_public_key: bytes, burst: int = 1000, low: int = 750,
                 silence: float = 0.3) -> None:
        import secrets
        import socket
        import threading

        from pyroute2.netns import popns, pushns

        from wgpy.core.cookie import CookieGenerator

        message = bytearray(148)
        message[0] = 1  # handshake initiation
        message[4:116] = secrets.token_bytes(112)  # sender index, ephemeral, sealed parts
        CookieGenerator(responder_public_key).add_macs(message, 0.0)
        self.packet = bytes(message)
        self.burst, self.low, self.silence = burst, low, silence
        self.sent = 0
        self.replies = 0
        self.bursts = 0
        self.silences = 0  # bursts sent after `silence` without a reply
        self._started = 0.0
        self._ended: float | None = None
        self._stop = threading.Event()
        pushns(netns)
        try:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
            # what waits in a qdisc stays charged to the socket's send buffer
            self._socket.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 16 << 20)
            self._socket.bind((bind_ip, 0))
            self._socket.connect(target)
            self._socket.setblocking(False)
        finally:
            popns()
        self._send = _Sendmmsg(self._socket.fileno(), self.packet, burst)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import select

        sock, unanswered = self._socket, 0
        while not self._stop.is_set():
            sent = self._send()
            if not sent:  # EAGAIN, ENOBUFS: the socket's buffer drains first
                self._stop.wait(0.01)
                continue
            self.sent += sent
            self.bursts += 1
            unanswered += sent
            while unanswered > self.low and not self._stop.is_set():
                if not select.select([sock], [], [], self.silence)[0]:
                    self.silences += 1
                    unanswered = 0
                    break
                while True:
                    try:
                        sock.recv(256)
                    except OSError:
                        break
                    self.replies += 1
                    unanswered = max(0, unanswered - 1)

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._socket.close()
        self._ended = time.monotonic()

    def describe(self) -> str:
        seconds = (self._ended or time.monotonic()) - self._started
        return (f"{self.bursts} bursts ({self.silences} after a silence), {self.sent} flood "
                f"packets sent, {self.replies} replies read in {seconds:.1f} s")


class ReleasedInSlots:
    """netem on dev in ns holds what dev sends and releases it every `slot` at once, until
    exit (the root qdisc is deleted then, which restores the default)."""

    def __init__(self, ns: Netns, dev: str, slot: str = "250ms") -> None:
        self.ns, self.dev, self.slot = ns, dev, slot

    def __enter__(self) -> Self:
        self.ns.run(["tc", "qdisc", "replace", "dev", self.dev, "root", "netem", "slot",
                     self.slot, "limit", "100000"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.ns.run(["tc", "qdisc", "del", "dev", self.dev, "root"], check=False)


# <asm-generic/socket.h>; Python's socket module does not name them
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33


class _Sendmmsg:
    """sendmmsg(2) of `count` copies of one datagram on a connected socket: returns how many
    went out (0 on EAGAIN/ENOBUFS)."""

    def __init__(self, fd: int, packet: bytes, count: int) -> None:
        import ctypes

        class IoVec(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

        class MsgHdr(ctypes.Structure):
            _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                        ("iov", ctypes.POINTER(IoVec)), ("iovlen", ctypes.c_size_t),
                        ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                        ("flags", ctypes.c_int)]

        class MMsgHdr(ctypes.Structure):
            _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]

        self._libc = ctypes.CDLL(None, use_errno=True)
        self._buffer = ctypes.create_string_buffer(packet, len(packet))
        self._iov = IoVec(ctypes.addressof(self._buffer), len(packet))
        self._messages = (MMsgHdr * count)()
        for message in self._messages:
            message.hdr.iov = ctypes.pointer(self._iov)
            message.hdr.iovlen = 1
        self._fd, self._count = fd, count

    def __call__(self) -> int:
        sent = 0
        while sent < self._count:  # at most UIO_MAXIOV (1024) per call
            chunk = min(self._count - sent, 1024)
            done = self._libc.sendmmsg(self._fd, self._messages, chunk, 0)
            if done <= 0:
                break
            sent += done
        return sent


def udp_counter(ns: Netns, name: str, match: str, hook: str = "input") -> Callable[[], int]:
    """An nft counter in ns (table inet `name`, the `hook` hook) for packets matching
    `match`; returns its reader."""
    ns.run(["nft", (f"add table inet {name}; "
                   f"add chain inet {name} {hook} {{ type filter hook {hook} priority 0; }}; "
                   f"add rule inet {name} {hook} {match} counter")])

    def read() -> int:
        text = ns.run(["nft", "list", "table", "inet", name]).stdout
        return int(text.split("counter packets ", 1)[1].split()[0])

    return read
