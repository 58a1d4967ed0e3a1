"""Network-namespace test harness: namespaces, veths, WireGuard daemons, the real `wg`.

Theory of operation: a `Topology` is a context manager that records everything it creates
(namespaces, links, processes, interface names whose UAPI socket lives in the shared
/var/run/wireguard) and undoes all of it in `__exit__`, also when the body raised. Each
Topology also writes that record to /run/wgpy-e2e/ while it is alive, so that a run killed
half-way (SIGKILL, CI timeout) can be cleaned up later by `clean_stale()` -- which only ever
touches what a *dead* owner recorded, never another live test run's namespaces.

Test code may shell out to `ip`; the product uses pyroute2. Used by tests/e2e (via the `topo`
fixture in conftest.py) and by bench/compare.py; run `python3 tests/support/netns.py --clean-stale`
to remove what aborted runs left behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

WIREGUARD_RUN_DIR = Path("/var/run/wireguard")
REGISTRY_DIR = Path("/run/wgpy-e2e")
DEFAULT_SOCKET_TIMEOUT = 10.0
TERMINATE_GRACE = 3.0

# Environment that makes wireguard-go (and wgpy-daemon, same contract) stay in the foreground
# and start without the kernel module.
USERSPACE_ENV = {
    "WG_PROCESS_FOREGROUND": "1",
    "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1",
}

T = TypeVar("T")


def unique_name(prefix: str, n: int = 15) -> str:
    """`prefix` followed by random hex, at most `n` characters (15 = IFNAMSIZ - 1)."""
    room = n - len(prefix)
    if room < 4:
        raise ValueError(f"prefix {prefix!r} leaves {room} random characters in {n}; need >= 4")
    return prefix + secrets.token_hex(room)[: min(room, 8)]


class CommandFailed(subprocess.CalledProcessError):
    """A CalledProcessError whose message includes the output, so a failing test says why."""

    def __str__(self) -> str:
        cmd = self.cmd if isinstance(self.cmd, str) else shlex.join(map(str, self.cmd))
        text = f"command exited {self.returncode}: {cmd}"
        for label, stream in (("stdout", self.stdout), ("stderr", self.stderr)):
            if stream:
                text += f"\n--- {label} ---\n{_tail(stream)}"
        return text


class CleanupError(RuntimeError):
    """Raised from Topology.__exit__ when something it made could not be removed."""


def _tail(text: str | bytes, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_checked(
    argv: Sequence[str],
    check: bool = True,
    timeout: float = 30,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (text mode, output captured); raise CommandFailed on a non-zero exit if check."""
    full_env = {**os.environ, **env} if env else None
    result = subprocess.run(
        list(argv), check=False, input=input, capture_output=True, text=True, timeout=timeout, env=full_env
    )
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, list(argv), result.stdout, result.stderr)
    return result


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll predicate until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {text}")
        time.sleep(interval)


def format_endpoint(host: str, port: int) -> str:
    """`wg set ... endpoint` syntax: 10.0.0.1:51820 or [fd00::1]:51820."""
    address = ipaddress.ip_address(host)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def bare_address(address_with_prefix: str) -> str:
    """'10.0.0.1/24' -> '10.0.0.1'."""
    return str(ipaddress.ip_interface(address_with_prefix).ip)


def host_prefix(address_with_prefix: str) -> str:
    """'10.0.0.1/24' -> '10.0.0.1/32', 'fd00::1/64' -> 'fd00::1/128' (a peer's AllowedIPs)."""
    ip = ipaddress.ip_interface(address_with_prefix).ip
    return f"{ip}/{ip.max_prefixlen}"


# --- processes -------------------------------------------------------------------------------


def _process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: distinguishes a process from a later one reusing its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields follow the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _kill_process_group(process: subprocess.Popen[Any], grace: float = TERMINATE_GRACE) -> None:
    """SIGTERM the process group (each tracked process leads its own session), then SIGKILL."""
    if process.poll() is not None:
        _kill_group_quietly(process.pid, signal.SIGKILL)  # children it may have left behind
        return
    _kill_group_quietly(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _kill_group_quietly(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    _kill_group_quietly(process.pid, signal.SIGKILL)


def _kill_group_quietly(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_pid_list(pids: list[int], grace: float = TERMINATE_GRACE) -> None:
    """SIGTERM pids (that are ours: inside a namespace we made), then SIGKILL survivors."""
    pids = [pid for pid in pids if pid != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def namespace_pids(name: str) -> list[int]:
    result = run_checked(["ip", "netns", "pids", name], check=False)
    return [int(word) for word in result.stdout.split()] if result.returncode == 0 else []


def namespace_exists(name: str) -> bool:
    return Path("/var/run/netns", name).exists()


# --- namespaces ------------------------------------------------------------------------------


class Netns:
    """One network namespace made by a Topology. Commands run via `ip netns exec NAME`."""

    def __init__(self, name: str, topology: Topology) -> None:
        self.name = name
        self._topology = topology

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    def argv(self, cmd: Sequence[str] | str) -> list[str]:
        if isinstance(cmd, str):
            cmd = ["bash", "-c", cmd]
        return ["ip", "netns", "exec", self.name, *map(str, cmd)]

    def run(
        self,
        cmd: Sequence[str] | str,
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd in this namespace (a str runs via `bash -c`); text mode, output captured."""
        return run_checked(self.argv(cmd), check=check, timeout=timeout, input=input, env=env)

    def popen(
        self, cmd: Sequence[str] | str, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start cmd in this namespace in its own process group; killed at cleanup.

        Unless stdout/stderr are given, both go to a log file whose path is in
        `process.log_path` (see `Topology.log_of`), so a busy process never blocks on a pipe.
        """
        return self._topology._popen(self, cmd, env=env, **kwargs)

    def ping(
        self, address: str, count: int = 3, interval: float = 0.2, timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        """Ping (v4 or v6) and raise CommandFailed unless every echo was answered."""
        result = self.run(
            ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "2", address],
            check=False,
            timeout=timeout,
        )
        if result.returncode != 0 or f"{count} received" not in result.stdout:
            raise CommandFailed(result.returncode or 1, result.args, result.stdout, result.stderr)
        return result

    def write_file(self, content: str, name: str = "file", mode: int = 0o600) -> Path:
        """A file in the topology's private temp dir (mode 0600 by default; namespaces share
        the filesystem), removed at cleanup. Returns its path."""
        return self._topology.write_file(content, name=name, mode=mode)

    def link_exists(self, ifname: str) -> bool:
        return self.run(["ip", "link", "show", "dev", ifname], check=False).returncode == 0


@dataclass
class WgEnd:
    """One side of a tunnel configured by Topology.configure_pair."""

    ns: Netns
    ifname: str
    private_key: str
    public_key: str
    listen_port: int
    tunnel_v4: str  # with prefix length, e.g. "10.77.0.1/24"
    tunnel_v6: str  # e.g. "fd77::1/64"

    @property
    def ip4(self) -> str:
        return bare_address(self.tunnel_v4)

    @property
    def ip6(self) -> str:
        return bare_address(self.tunnel_v6)


@dataclass
class WgPeerDump:
    public_key: str
    preshared_key: str | None
    endpoint: str | None
    allowed_ips: list[str]
    latest_handshake: int  # unix seconds, 0 = never
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int | None  # None = off


@dataclass
class WgDump:
    """Parsed `wg show IFNAME dump`."""

    private_key: str | None
    public_key: str | None
    listen_port: int
    fwmark: int | None
    peers: dict[str, WgPeerDump] = field(default_factory=dict)


def parse_wg_dump(text: str) -> WgDump:
    """Parse `wg show IFNAME dump`: one interface line, then one line per peer, tab-separated."""
    lines = [line for line in text.splitlines() if line]
    if not lines:
        raise ValueError("empty `wg show dump` output")

    def optional(value: str) -> str | None:
        return None if value in ("(none)", "off") else value

    private_key, public_key, port, fwmark = lines[0].split("\t")
    dump = WgDump(
        private_key=optional(private_key),
        public_key=optional(public_key),
        listen_port=int(port),
        fwmark=None if fwmark == "off" else int(fwmark, 0),
    )
    for line in lines[1:]:
        key, psk, endpoint, allowed, handshake, rx, tx, keepalive = line.split("\t")
        dump.peers[key] = WgPeerDump(
            public_key=key,
            preshared_key=optional(psk),
            endpoint=optional(endpoint),
            allowed_ips=[] if allowed == "(none)" else allowed.split(","),
            latest_handshake=int(handshake),
            rx_bytes=int(rx),
            tx_bytes=int(tx),
            persistent_keepalive=None if keepalive == "off" else int(keepalive),
        )
    return dump


class Topology:
    """Namespaces, veths and daemons for one test; all of it removed in __exit__.

    `prefix` starts every namespace name (`prefix-role-rand`); its first part (up to the first
    '-', at most 5 characters) starts interface names, so keep that part short ('wgh').
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.short_prefix = prefix.split("-", 1)[0][:5] or "wgt"
        self.id = secrets.token_hex(4)
        self.namespaces: list[Netns] = []
        self.links: list[tuple[Netns, str]] = []
        self.uapi_interfaces: list[str] = []  # names whose /var/run/wireguard socket is ours
        self.processes: list[subprocess.Popen[Any]] = []
        self._tmpdir: Path | None = None
        self._registry_file: Path | None = None
        self._entered = False

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._entered = True
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.short_prefix}-{self.id}-"))
        self._save_registry()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        problems = self.cleanup()
        if problems and exc_type is None:
            raise CleanupError("; ".join(problems))

    # -- naming ------------------------------------------------------------------------------

    def ifname(self, tag: str = "") -> str:
        """A fresh interface name: short prefix + tag + random hex, at most 15 characters."""
        return unique_name(self.short_prefix + tag)

    @property
    def tmpdir(self) -> Path:
        if self._tmpdir is None:
            raise RuntimeError("use Topology as a context manager (with Topology(...) as topo)")
        return self._tmpdir

    def write_file(self, content: str, name: str = "file", mode: int = 0o600) -> Path:
        fd, path = tempfile.mkstemp(prefix=f"{name}-", dir=self.tmpdir)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return Path(path)

    # -- building ----------------------------------------------------------------------------

    def netns(self, role: str) -> Netns:
        """Create namespace `prefix-role-rand` with lo up."""
        self.tmpdir  # noqa: B018 -- fails early outside `with`
        name = f"{self.prefix}-{role}-{secrets.token_hex(3)}"
        run_checked(["ip", "netns", "add", name])
        ns = Netns(name, self)
        self.namespaces.append(ns)
        self._save_registry()
        ns.run(["ip", "link", "set", "lo", "up"])
        return ns

    def veth(
        self,
        a: Netns,
        b: Netns,
        a_addrs: Sequence[str] = (),
        b_addrs: Sequence[str] = (),
        name_a: str | None = None,
        name_b: str | None = None,
        mtu: int | None = None,
    ) -> tuple[str, str]:
        """A veth pair between a and b, addresses (with prefix length) assigned, links up.

        IPv6 addresses get `nodad` so they are usable at once.
        """
        name_a = name_a or self.ifname("v")
        name_b = name_b or self.ifname("v")
        run_checked(
            ["ip", "link", "add", name_a, "netns", a.name, "type", "veth",
             "peer", "name", name_b, "netns", b.name]
        )
        self.links.append((a, name_a))
        self.links.append((b, name_b))
        self._save_registry()
        for ns, ifname, addrs in ((a, name_a, a_addrs), (b, name_b, b_addrs)):
            if mtu is not None:
                ns.run(["ip", "link", "set", ifname, "mtu", str(mtu)])
            self.add_addresses(ns, ifname, addrs)
            ns.run(["ip", "link", "set", ifname, "up"])
        return name_a, name_b

    @staticmethod
    def add_addresses(ns: Netns, ifname: str, addrs: Sequence[str]) -> None:
        for addr in addrs:
            extra = ["nodad"] if ipaddress.ip_interface(addr).version == 6 else []
            ns.run(["ip", "address", "add", addr, "dev", ifname, *extra])

    # -- processes ---------------------------------------------------------------------------

    def _popen(
        self,
        ns: Netns,
        cmd: Sequence[str] | str,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        log_path: Path | None = None
        if "stdout" not in kwargs and "stderr" not in kwargs:
            log_path = self.tmpdir / f"proc-{len(self.processes)}.log"
            log = open(log_path, "wb")  # noqa: SIM115 -- the child keeps the fd
            kwargs["stdout"] = log
            kwargs["stderr"] = subprocess.STDOUT
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        full_env = {**os.environ, **env} if env else None
        try:
            process = subprocess.Popen(
                ns.argv(cmd), env=full_env, start_new_session=True, **kwargs
            )
        finally:
            if log_path is not None:
                kwargs["stdout"].close()
        process.log_path = log_path  # type: ignore[attr-defined]
        self.processes.append(process)
        self._save_registry()
        return process

    @staticmethod
    def log_of(process: subprocess.Popen[Any]) -> str:
        """The combined stdout/stderr a popen'ed process wrote so far ('' if not logged)."""
        path = getattr(process, "log_path", None)
        if path is None:
            return ""
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return ""

    def track_interface(self, ns: Netns, ifname: str) -> None:
        """Own an interface something else created (a daemon that went to the background,
        wg-quick): its link and its /var/run/wireguard socket are removed at cleanup."""
        self.uapi_interfaces.append(ifname)
        self.links.append((ns, ifname))
        self._save_registry()

    def start_userspace(
        self,
        ns: Netns,
        ifname: str,
        argv: Sequence[str],
        extra_env: dict[str, str] | None = None,
        timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> subprocess.Popen[Any]:
        """Start a userspace WireGuard (argv + [ifname]) in ns, foreground, with the
        wireguard-go environment, and wait until its UAPI socket exists."""
        socket_path = WIREGUARD_RUN_DIR / f"{ifname}.sock"
        if socket_path.exists():
            raise RuntimeError(f"{socket_path} already exists: interface name in use")
        self.track_interface(ns, ifname)
        process = self._popen(ns, [*argv, ifname], env={**USERSPACE_ENV, **(extra_env or {})})

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{argv[0]} for {ifname} exited {process.returncode} before its socket "
                    f"appeared:\n{_tail(self.log_of(process))}"
                )
            return socket_path.exists()

        wait_for(ready, timeout=timeout, message=lambda: f"{socket_path} ({argv[0]})\n"
                 + _tail(self.log_of(process)))
        return process

    def start_wireguard_go(
        self, ns: Netns, ifname: str, binary: str = "wireguard-go",
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[Any]:
        """wireguard-go IFNAME in ns (binary may point at another build, e.g. upstream)."""
        return self.start_userspace(ns, ifname, [binary], extra_env=extra_env)

    def start_wgpy_daemon(
        self, ns: Netns, ifname: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        """`python -m wgpy.cli.daemon -f IFNAME` in ns (same contract as wireguard-go)."""
        return self.start_userspace(
            ns, ifname, [sys.executable, "-m", "wgpy.cli.daemon", "-f"], extra_env=extra_env
        )

    def stop_process(self, process: subprocess.Popen[Any]) -> int:
        """SIGTERM then SIGKILL a tracked process's group now; returns its exit status."""
        _kill_process_group(process)
        return process.returncode

    # -- wg ----------------------------------------------------------------------------------

    def wg(
        self, ns: Netns, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The real `wg` (wireguard-tools) inside ns."""
        return ns.run(["wg", *args], input=input, check=check)

    def wg_dump(self, ns: Netns, ifname: str) -> WgDump:
        return parse_wg_dump(self.wg(ns, "show", ifname, "dump").stdout)

    @staticmethod
    def genkey() -> tuple[str, str]:
        """(private, public) base64 keys from `wg genkey` / `wg pubkey` (no network involved)."""
        private = run_checked(["wg", "genkey"]).stdout.strip()
        public = run_checked(["wg", "pubkey"], input=private + "\n").stdout.strip()
        return private, public

    @staticmethod
    def genpsk() -> str:
        return run_checked(["wg", "genpsk"]).stdout.strip()

    def configure_pair(
        self,
        a: Netns,
        a_ifname: str,
        b: Netns,
        b_ifname: str,
        a_host: str | None,
        b_host: str | None,
        *,
        ports: tuple[int, int] = (51820, 51821),
        tunnel_v4: tuple[str, str] = ("10.77.0.1/24", "10.77.0.2/24"),
        tunnel_v6: tuple[str, str] = ("fd77::1/64", "fd77::2/64"),
        preshared_key: bool | str = False,
        persistent_keepalive: int | None = None,
        mtu: int = 1420,
    ) -> tuple[WgEnd, WgEnd]:
        """Configure two running WireGuard interfaces as each other's peer with the real `wg`.

        a_host is the outer address b sends to to reach a (None: b has no endpoint for a and
        must learn it from a's first packet, so only a can initiate); b_host likewise. Each
        side's peer gets the other's tunnel /32 and /128 as AllowedIPs. Then tunnel addresses
        (v4 + v6) are assigned, MTU set, and both interfaces brought up.
        """
        psk = self.genpsk() if preshared_key is True else (preshared_key or None)
        ends = []
        for ns, ifname, port, v4, v6 in (
            (a, a_ifname, ports[0], tunnel_v4[0], tunnel_v6[0]),
            (b, b_ifname, ports[1], tunnel_v4[1], tunnel_v6[1]),
        ):
            private, public = self.genkey()
            ends.append(WgEnd(ns, ifname, private, public, port, v4, v6))
        end_a, end_b = ends
        for local, remote, remote_host in ((end_a, end_b, b_host), (end_b, end_a, a_host)):
            key_file = self.write_file(local.private_key + "\n", name="private")
            args = ["set", local.ifname, "listen-port", str(local.listen_port),
                    "private-key", str(key_file),
                    "peer", remote.public_key,
                    "allowed-ips", f"{host_prefix(remote.tunnel_v4)},{host_prefix(remote.tunnel_v6)}"]
            if psk:
                args += ["preshared-key", str(self.write_file(psk + "\n", name="psk"))]
            if remote_host is not None:
                args += ["endpoint", format_endpoint(remote_host, remote.listen_port)]
            if persistent_keepalive is not None:
                args += ["persistent-keepalive", str(persistent_keepalive)]
            self.wg(local.ns, *args)
            self.add_addresses(local.ns, local.ifname, [local.tunnel_v4, local.tunnel_v6])
            local.ns.run(["ip", "link", "set", local.ifname, "mtu", str(mtu), "up"])
        return end_a, end_b

    def iperf3(
        self,
        server: Netns,
        client: Netns,
        server_address: str,
        args: Sequence[str] = (),
        seconds: float = 2,
        port: int = 5201,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One iperf3 run (`iperf3 -s -1` in server, client with -J and args); parsed JSON."""
        server_process = self._popen(server, ["iperf3", "-s", "-1", "-p", str(port)])
        wait_for(
            lambda: server.run(["ss", "-Hltn", f"sport = :{port}"]).stdout.strip()
            or server_process.poll() is not None,
            timeout=5,
            message=f"iperf3 server listening on {port}",
        )
        try:
            result = client.run(
                ["iperf3", "-J", "-c", server_address, "-p", str(port), "-t", f"{seconds:g}",
                 *args],
                check=False,
                timeout=timeout or seconds + 20,
            )
        finally:  # the port must be free for the next run, also after a client timeout
            try:
                server_process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_process_group(server_process)
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise CommandFailed(result.returncode, result.args, result.stdout, result.stderr)
        if result.returncode != 0 or "error" in report:
            raise CommandFailed(result.returncode or 1, result.args,
                                report.get("error", result.stdout), result.stderr)
        return report

    wait_for = staticmethod(wait_for)

    # -- teardown ----------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Undo everything; keep going past failures; return what could not be undone."""
        problems: list[str] = []
        for process in reversed(self.processes):
            try:
                _kill_process_group(process)
            except Exception as error:  # noqa: BLE001 -- cleanup must continue
                problems.append(f"process {process.pid}: {error}")
        # Anything else running in our namespaces is ours too (daemons that forked into the
        # background, `cmd &` in a bash -c).
        for ns in self.namespaces:
            _kill_pid_list(namespace_pids(ns.name))
        for ns, ifname in reversed(self.links):
            if namespace_exists(ns.name) and ns.link_exists(ifname):
                result = ns.run(["ip", "link", "del", ifname], check=False)
                if result.returncode != 0 and ns.link_exists(ifname):
                    problems.append(f"link {ifname} in {ns.name}: {result.stderr.strip()}")
        for ns in reversed(self.namespaces):
            if namespace_exists(ns.name):
                result = run_checked(["ip", "netns", "del", ns.name], check=False)
                if result.returncode != 0:
                    problems.append(f"netns {ns.name}: {result.stderr.strip()}")
        for ifname in self.uapi_interfaces:
            (WIREGUARD_RUN_DIR / f"{ifname}.sock").unlink(missing_ok=True)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        if self._registry_file is not None and not problems:
            self._registry_file.unlink(missing_ok=True)
        self.processes.clear()
        self.links.clear()
        self.namespaces.clear()
        self.uapi_interfaces.clear()
        return problems

    # -- crash registry ----------------------------------------------------------------------

    def _save_registry(self) -> None:
        if not self._entered:
            return
        REGISTRY_DIR.mkdir(mode=0o700, exist_ok=True)
        self._registry_file = REGISTRY_DIR / f"{self.short_prefix}-{self.id}.json"
        record = {
            "owner_pid": os.getpid(),
            "owner_start": _process_start_time(os.getpid()),
            "namespaces": [ns.name for ns in self.namespaces],
            "uapi_interfaces": list(self.uapi_interfaces),
            "processes": [[p.pid, _process_start_time(p.pid)] for p in self.processes],
            "tmpdir": str(self._tmpdir),
        }
        temporary = self._registry_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(self._registry_file)


def _registry_records() -> list[tuple[Path, dict[str, Any], bool]]:
    """(file, record, owner alive) for every readable record in REGISTRY_DIR."""
    records = []
    for record_file in sorted(REGISTRY_DIR.glob("*.json")) if REGISTRY_DIR.is_dir() else []:
        try:
            record = json.loads(record_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        owner_start = _process_start_time(record["owner_pid"])
        alive = owner_start is not None and owner_start == record["owner_start"]
        records.append((record_file, record, alive))
    return records


def live_state() -> list[str]:
    """Namespaces and UAPI socket file names (IFNAME.sock) recorded by Topologies whose owner
    still runs: another test run going on right now, not a leak."""
    names = []
    for _, record, alive in _registry_records():
        if alive:
            names += record.get("namespaces", [])
            names += [f"{ifname}.sock" for ifname in record.get("uapi_interfaces", [])]
    return names


def clean_stale(verbose: bool = False) -> list[str]:
    """Remove what Topologies of dead processes recorded in REGISTRY_DIR. Returns what it did.

    A record is stale only when its owner process is gone (PID plus start time, so a reused PID
    does not count as alive): concurrent test runs are never touched.
    """
    done: list[str] = []
    for record_file, record, alive in _registry_records():
        if alive:
            continue
        for pid, start in record.get("processes", []):
            if start is not None and _process_start_time(pid) == start:
                _kill_group_quietly(pid, signal.SIGKILL)
                done.append(f"killed process {pid}")
        for name in record.get("namespaces", []):
            if namespace_exists(name):
                _kill_pid_list(namespace_pids(name), grace=1.0)
                run_checked(["ip", "netns", "del", name], check=False)
                done.append(f"deleted netns {name}")
        for ifname in record.get("uapi_interfaces", []):
            socket_path = WIREGUARD_RUN_DIR / f"{ifname}.sock"
            if socket_path.exists():
                socket_path.unlink()
                done.append(f"removed {socket_path}")
        tmpdir = record.get("tmpdir")
        if tmpdir and Path(tmpdir).is_dir() and Path(tmpdir).parent == Path(tempfile.gettempdir()):
            shutil.rmtree(tmpdir, ignore_errors=True)
        record_file.unlink(missing_ok=True)
    if verbose:
        for line in done:
            print(f"clean-stale: {line}")
    return done


if __name__ == "__main__":
    if sys.argv[1:] == ["--clean-stale"]:
        clean_stale(verbose=True)
    elif sys.argv[1:] == ["--live"]:
        print("\n".join(live_state()))
    else:
        sys.exit(f"usage: {sys.argv[0]} --clean-stale | --live")
