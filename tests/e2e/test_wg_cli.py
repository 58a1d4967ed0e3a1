"""`wgpy` against the real `wg`, side by side, over a scripted UAPI daemon (issue 4).

A fake daemon in this process answers `get=1` with a device state we choose (any handshake
time, byte count, key, endpoint) and records every `set=1` it receives. Both tools run against
it with the same arguments; their stdout, stderr and exit status must be equal byte for byte,
and for write commands the UAPI request each tool sent must be equal too.

`wgpy` is run through a script named `wg`, so both print the same program name in usage and
pubkey messages. Commands run in a private mount namespace whose /var/run/wireguard is the
test's own directory, so `wg show all` sees only the test's devices, not those of concurrently
running tests. The helpers here (Runner, assert_same) are shared with test_wg_cli_live.py.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from handshake_ages import mask_handshake_ages
from netns import Topology

from wgpy.control.uapi import format_get
from wgpy.keys import generate_private_key, key_from_base64, key_to_base64, public_key
from wgpy.model import DeviceState, PeerState

NETNS_PREFIX = "wgc"
pytestmark = pytest.mark.e2e
TOOLS = ("wg", "wgpy")


@dataclass(frozen=True)
class Result:
    stdout: bytes
    stderr: bytes
    returncode: int

    def text(self) -> str:
        return (f"rc={self.returncode}\n--- stdout\n{self.stdout.decode(errors='replace')}"
                f"--- stderr\n{self.stderr.decode(errors='replace')}")


def write_wgpy_as_wg(directory: Path) -> Path:
    """A `wg` executable in `directory` that runs wgpy's main (so argv[0] ends in "wg")."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "wg"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom wgpy.cli.wg import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


class Runner:
    """Runs either tool. Commands run in `netns` unless told otherwise: endpoint names are
    resolved there, where nothing outside the test is reachable, and with no retries unless a
    test asks (WG_ENDPOINT_RESOLUTION_RETRIES)."""

    def __init__(self, wgpy_script: Path, netns: str | None = None) -> None:
        self.wgpy_script = wgpy_script
        self.netns = netns

    def argv(self, tool: str, args: Sequence[str], netns: str | None = None,
             run_dir: Path | None = None) -> list[str]:
        command = ["wg" if tool == "wg" else str(self.wgpy_script), *args]
        if run_dir is not None:
            # A private mount namespace (unshare makes its mounts private) where
            # /var/run/wireguard is run_dir.
            command = ["unshare", "-m", "sh", "-c",
                       'mount --bind "$0" /var/run/wireguard && exec "$@"', str(run_dir),
                       *command]
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        return command

    def run(self, tool: str, args: Sequence[str], *, netns: str | None = None,
            run_dir: Path | None = None, env: dict[str, str] | None = None,
            input: bytes | None = None, timeout: float = 60) -> Result:
        full_env = {**os.environ, "WG_COLOR_MODE": "never",
                    "WG_ENDPOINT_RESOLUTION_RETRIES": "0", **(env or {})}
        for key, value in list(full_env.items()):
            if value is None:
                del full_env[key]
        process = subprocess.run(
            self.argv(tool, args, netns or self.netns, run_dir), input=input,
            capture_output=True,
            env=full_env, timeout=timeout, check=False,
        )
        return Result(process.stdout, process.stderr, process.returncode)

    def both(self, args: Sequence[str], **kwargs: object) -> tuple[Result, Result]:
        """Run wg then wgpy with the same arguments (for outputs with no handshake age in
        them: those go through assert_same_as_wg)."""
        wg = self.run("wg", args, **kwargs)  # type: ignore[arg-type]
        wgpy = self.run("wgpy", args, **kwargs)  # type: ignore[arg-type]
        return wg, wgpy


class AnyRunner(Protocol):
    def run(self, tool: str, args: Sequence[str], **kwargs: Any) -> Any: ...


def assert_same_as_wg(runner: AnyRunner, args: Sequence[str], what: str = "",
                      adjust_wg: Callable[[Result], Result] | None = None,
                      **kwargs: Any) -> None:
    """wg, then wgpy, and if they differ wg once more: equal byte for byte but for the
    handshake ages ("1 second ago" becomes "2 seconds ago" while the tools run, and one wgpy
    call may take seconds under emulation), and each age wgpy shows lies between the ones the
    two wg runs around it show. adjust_wg: what to make of wg's answers first."""
    adjust = adjust_wg or (lambda result: result)
    first = adjust(runner.run("wg", args, **kwargs))
    wgpy = runner.run("wgpy", args, **kwargs)
    if wgpy == first:
        return
    second = adjust(runner.run("wg", args, **kwargs))
    (first_out, first_ages), (wgpy_out, wgpy_ages), (_, second_ages) = (
        mask_handshake_ages(run.stdout) for run in (first, wgpy, second))
    assert_same(Result(first_out, first.stderr, first.returncode),
                Result(wgpy_out, wgpy.stderr, wgpy.returncode), what=what)
    assert len(first_ages) == len(wgpy_ages) == len(second_ages), what
    for low, age, high in zip(first_ages, wgpy_ages, second_ages, strict=True):
        assert low <= age <= high, f"{what}: handshake age {age} not in [{low}, {high}]"


def as_on_a_kernel_host(wg: Result) -> Result:
    """wg's answer for an interface name no link has, as wg gives it on a host with the
    WireGuard module ("No such device"). Without the module wg says "Protocol not supported"
    for every name; wgpy gives the kernel host's answer, the one that says what is wrong
    (README: differences kept on purpose)."""
    return Result(wg.stdout, wg.stderr.replace(b"Protocol not supported", b"No such device"),
                  wg.returncode)


def as_on_a_kernel_host_checked(wg: Result) -> Result:
    """as_on_a_kernel_host, for a name wg must find absent on this host (no module)."""
    assert b"Protocol not supported" in wg.stderr, wg.text()
    return as_on_a_kernel_host(wg)


def assert_same(wg: Result, wgpy: Result, normalize: Callable[[bytes], bytes] | None = None,
                what: str = "") -> None:
    norm = normalize or (lambda data: data)
    a = Result(norm(wg.stdout), norm(wg.stderr), wg.returncode)
    b = Result(norm(wgpy.stdout), norm(wgpy.stderr), wgpy.returncode)
    assert a == b, f"{what}\n=== wg\n{a.text()}\n=== wgpy\n{b.text()}"


# -- fake daemon ----------------------------------------------------------------------------------


class ScriptedDaemon:
    """A UAPI socket that answers get=1 with `answer` and records set requests."""

    def __init__(self, path: Path, answer: str, set_errno: int = 0) -> None:
        self.path = path
        self.answer = answer
        self.set_errno = set_errno
        self.requests: list[str] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                try:
                    while b"\n\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if not data:
                        continue  # wg probing whether the socket is alive
                    self.requests.append(data.decode())
                    if data.startswith(b"get=1\n"):
                        conn.sendall(self.answer.encode())
                    else:
                        conn.sendall(f"errno={-self.set_errno}\n\n".encode())
                except OSError:
                    continue

    def close(self) -> None:
        self._server.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def runner(topo: Topology) -> Iterator[Runner]:
    """Both tools, run in a namespace of their own (lo only)."""
    ns = topo.netns("cli")
    yield Runner(write_wgpy_as_wg(topo.tmpdir / "bin"), netns=ns.name)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="wgc-run-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def daemons(run_dir: Path) -> Iterator[dict[str, ScriptedDaemon]]:
    made: dict[str, ScriptedDaemon] = {}
    yield made
    for daemon in made.values():
        daemon.close()


def k(seed: int) -> bytes:
    return bytes((seed * 7 + i) % 256 for i in range(32))


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def busy_state(now: int) -> DeviceState:
    """Every field wg prints, in many shapes; peers in an order wg has to re-sort."""
    return DeviceState(
        private_key=k(1), listen_port=51820, fwmark=0x1234,
        peers=[
            PeerState(public_key=k(2)),  # nothing but a key: "(none)" everywhere
            PeerState(public_key=k(3), preshared_key=k(4), endpoint=("192.0.2.7", 51820),
                      allowed_ips=[net("10.0.0.0/24"), net("fd00:0:0:1::/64"),
                                   net("::ffff:10.1.2.3/128"), net("::1.2.3.4/128")],
                      last_handshake_sec=now - 3, last_handshake_nsec=5,
                      rx_bytes=1023, tx_bytes=1536, persistent_keepalive=25),
            PeerState(public_key=k(5), endpoint=("fd00::1234:0:0:1", 7),
                      allowed_ips=[net("0.0.0.0/0"), net("::/0")],
                      last_handshake_sec=now - (365 + 2) * 86400 - 3600 - 61,
                      rx_bytes=int(1.23 * 1024 * 1024), tx_bytes=5 * 1024**3 + 77,
                      persistent_keepalive=3661),
            PeerState(public_key=k(6), endpoint=("::ffff:192.0.2.9", 1),
                      last_handshake_sec=now + 100, rx_bytes=3 * 1024**4, tx_bytes=1,
                      persistent_keepalive=1),
            PeerState(public_key=k(7), last_handshake_sec=now - 3, last_handshake_nsec=9,
                      tx_bytes=1024**2 - 1, persistent_keepalive=65535,
                      allowed_ips=[net("10.9.0.1/32")]),
            PeerState(public_key=k(8), last_handshake_sec=now - 2 * 365 * 86400,
                      rx_bytes=1, allowed_ips=[net("fe80::/10")]),
        ],
    )


SHOW_ARGS = [
    [], ["show"], ["show", "all"], ["show", "interfaces"], ["show", "IF"], ["showconf", "IF"],
    *[["show", "IF", field] for field in (
        "public-key", "private-key", "listen-port", "fwmark", "peers", "preshared-keys",
        "endpoints", "allowed-ips", "latest-handshakes", "transfer", "persistent-keepalive",
        "dump", "bogus")],
    *[["show", "all", field] for field in (
        "public-key", "private-key", "listen-port", "fwmark", "peers", "preshared-keys",
        "endpoints", "allowed-ips", "latest-handshakes", "transfer", "persistent-keepalive",
        "dump", "bogus")],
    ["show", "interfaces", "x"], ["show", "IF", "dump", "x"], ["show", "--help"],
    ["show", "wgcabsent"], ["show", "wgcabsent", "dump"], ["showconf", "wgcabsent"],
    ["showconf"], ["showconf", "IF", "x"],
]


def start_devices(run_dir: Path, daemons: dict[str, ScriptedDaemon]) -> tuple[str, str]:
    now = int(time.time())
    busy, empty = "wgcbusy", "wgcempty"
    daemons[busy] = ScriptedDaemon(run_dir / f"{busy}.sock", format_get(busy_state(now)))
    daemons[empty] = ScriptedDaemon(run_dir / f"{empty}.sock", format_get(DeviceState()))
    return busy, empty


@pytest.mark.parametrize("env", [
    {}, {"WG_HIDE_KEYS": "never"}, {"WG_COLOR_MODE": "always"},
], ids=["plain", "keys-shown", "colour"])
def test_show_and_showconf_same_as_wg(runner: Runner, run_dir: Path,
                                      daemons: dict[str, ScriptedDaemon],
                                      env: dict[str, str]) -> None:
    busy, empty = start_devices(run_dir, daemons)
    # every argument list plainly; the env variants where keys or colours appear
    cases = SHOW_ARGS if not env else [
        ["show", "IF"], ["show"], ["show", "IF", "dump"], ["show", "IF", "private-key"],
        ["show", "IF", "preshared-keys"], ["showconf", "IF"]]
    for device in (busy, empty):
        for args in cases:
            argv = [device if a == "IF" else a for a in args]
            adjust = as_on_a_kernel_host_checked if "wgcabsent" in argv else None
            assert_same_as_wg(runner, argv, what=f"wg {' '.join(argv)} with {env}",
                              adjust_wg=adjust, run_dir=run_dir, env=env)
    # and the comparison is not vacuous: wg really printed the interesting parts
    wg = runner.run("wg", ["show", busy], run_dir=run_dir, env={"WG_HIDE_KEYS": "never"})
    for text in (b"latest handshake: 1 year, 2 days, 1 hour, 1 minute, ",
                 b"transfer: 1.23 MiB received, 5.00 GiB sent", b"3.00 TiB received",
                 b"System clock wound backward", b"every 1 hour, 1 minute, 1 second",
                 b"endpoint: [::ffff:192.0.2.9]:1", b"::ffff:10.1.2.3/128",
                 b"fwmark: 0x1234", b"preshared key: "):
        assert text in wg.stdout, text


def test_show_with_unusual_daemon_answers(runner: Runner, run_dir: Path,
                                          daemons: dict[str, ScriptedDaemon]) -> None:
    """Unknown keys ignored, zero keys, errors and malformed answers reported alike."""
    key = k(9).hex()
    answers = {
        "wgcextra": f"private_key={'0' * 64}\nfuture_key=1\npublic_key={key}\n"
                    f"preshared_key={'0' * 64}\nfuture=2\nallowed_ip=10.0.0.0/8\nerrno=0\n\n",
        "wgcerrno": "errno=5\n\n",
        "wgcbadval": "listen_port=70000\nerrno=0\n\n",
        "wgcnoerrno": "listen_port=1\n\n",
        "wgctrunc": "listen_port=1\n",
    }
    for name, answer in answers.items():
        daemons[name] = ScriptedDaemon(run_dir / f"{name}.sock", answer)
    for name in answers:
        for args in (["show", name], ["show", name, "dump"], ["showconf", name]):
            assert_same_as_wg(runner, args, what=" ".join(args), run_dir=run_dir)
    assert_same_as_wg(runner, ["show", "all"], what="show all", run_dir=run_dir)


def test_colour_on_a_terminal_only(runner: Runner, run_dir: Path,
                                   daemons: dict[str, ScriptedDaemon]) -> None:
    busy, _ = start_devices(run_dir, daemons)

    def on_tty(tool: str, env: dict[str, str]) -> bytes:
        master, slave = pty.openpty()
        full_env = {**os.environ, **env}
        full_env.pop("WG_COLOR_MODE", None) if "WG_COLOR_MODE" not in env else None
        process = subprocess.Popen(runner.argv(tool, ["show", busy], runner.netns, run_dir),
                                   stdout=slave, stderr=subprocess.DEVNULL, env=full_env)
        os.close(slave)
        output = b""
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        process.wait(timeout=10)
        os.close(master)
        return output

    for env in ({}, {"WG_COLOR_MODE": "never"}):
        for _ in range(3):
            wg, wgpy = on_tty("wg", env), on_tty("wgpy", env)
            if wg == wgpy:
                break
        assert wg == wgpy
        assert (b"\x1b[" in wg) == ("WG_COLOR_MODE" not in env)


# -- write commands: the exact UAPI requests ------------------------------------------------------

PEER_A = key_to_base64(k(20))
PEER_B = key_to_base64(k(21))
PEER_C = key_to_base64(k(22))


def write_files(directory: Path) -> dict[str, Path]:
    files = {
        "priv": key_to_base64(generate_private_key()) + "\n",
        "psk": key_to_base64(k(30)) + "\n  \n",
        "empty": "",
        "short": "abc",
        "trailing": key_to_base64(k(31)) + "x",
        "badkey": "A" * 43 + "B",
        "conf": (f"[Interface]\nPrivateKey = {key_to_base64(k(40))}\nListenPort = 51000\n"
                 f"FwMark = 0x20\n\n[Peer]\nPublicKey = {PEER_A}\nPresharedKey = "
                 f"{key_to_base64(k(41))}\nAllowedIPs = 10.0.0.0/24, fd00::/64\n"
                 f"AllowedIPs = 10.1.0.1/32\nEndpoint = 192.0.2.1:51820\n"
                 f"PersistentKeepalive = 25\n# c\n[Peer]\nPublicKey = {PEER_B}\n"
                 f"Endpoint = [fd00::1]:5\n"),
        "conf-nointerface": f"[Peer]\nPublicKey = {PEER_C}\nAllowedIPs = 10.3.0.0/16\n",
        "conf-nopeers": "[Interface]\nListenPort = 5\n",
        "conf-hostbits": f"[Peer]\nPublicKey = {PEER_C}\nAllowedIPs = 10.3.0.1/16\n",
        "conf-quick": "[Interface]\nAddress = 10.0.0.1/24\n",
        "conf-badkey": "[Interface]\nPrivateKey = abc\n",
        "conf-badcidr": f"[Peer]\nPublicKey = {PEER_C}\nAllowedIPs = 10.0.0.0/40\n",
        "conf-badendpoint": f"[Peer]\nPublicKey = {PEER_C}\nEndpoint = 10.0.0.1\n",
        "conf-nokey": "[Peer]\nAllowedIPs = 10.0.0.0/8\n",
        "conf-unknown": "[Interface]\nFoo = bar\n",
        "conf-preamble": "ListenPort = 5\n",
        "conf-crlf": f"[interface]\r\n\tlisten port = 7 # c\r\n[PEER]\r\npublickey={PEER_A}\r\n",
        "conf-bom": "\ufeff[Interface]\nListenPort = 7\n",
        "conf-latin1": "[Interface] # caf\udce9\nListenPort = 7\n",
        "conf-latin1-bad": "[Interface]\nListenPort = caf\udce9\n",
        "conf-empty-value": "[Interface]\nListenPort =\n",
        "conf-twopeers-samekey": f"[Peer]\nPublicKey = {PEER_A}\nAllowedIPs = 10.5.0.0/16\n"
                                 f"[Peer]\nPublicKey = {PEER_A}\nAllowedIPs = 10.6.0.0/16\n",
        "conf-no-newline": f"[Peer]\nPublicKey = {PEER_A}",
        "conf-resolve": f"[Peer]\nPublicKey = {PEER_A}\nEndpoint = localhost:51820\n",
        "conf-unresolvable": f"[Peer]\nPublicKey = {PEER_A}\nEndpoint = x.invalid:1\n"
                             "AllowedIPs = 10.0.0.1/8\n",
    }
    paths = {}
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content.encode("utf-8", errors="surrogateescape"))
        path.chmod(0o600)
        paths[name] = path
    return paths


def set_cases(files: dict[str, Path]) -> list[list[str]]:
    f = {name: str(path) for name, path in files.items()}
    return [
        ["set", "IF"],
        ["set", "IF", "listen-port", "51821", "fwmark", "0x10", "private-key", f["priv"]],
        ["set", "IF", "fwmark", "off", "listen-port", "0", "private-key", f["empty"]],
        ["set", "IF", "peer", PEER_A, "endpoint", "192.0.2.1:1", "allowed-ips",
         "10.0.0.0/8, fd00::/64,10.1.1.1", "persistent-keepalive", "off", "preshared-key",
         f["psk"], "peer", PEER_B, "remove", "peer", PEER_C, "allowed-ips", ""],
        ["set", "IF", "peer", PEER_A, "endpoint", "[fd00::1]:51820", "persistent-keepalive", "7"],
        ["set", "IF", "peer", PEER_A, "endpoint", "localhost:5"],
        ["set", "IF", "peer", PEER_A, "allowed-ips", "10.0.0.1/8"],  # host bits: a warning
        ["set", "IF", "peer", PEER_A, "preshared-key", f["empty"]],
        ["set", "IF", "listen-port", "http"],
        ["set", "IF", "peer", "bad"],
        ["set", "IF", "peer", PEER_A, "allowed-ips", "10.0.0.0/33"],
        ["set", "IF", "peer", PEER_A, "allowed-ips", "300.0.0.0/8"],
        ["set", "IF", "peer", PEER_A, "endpoint", "192.0.2.1"],
        ["set", "IF", "peer", PEER_A, "endpoint", "[fd00::1:5"],
        ["set", "IF", "peer", PEER_A, "endpoint", "no-such-host.invalid:5"],
        ["set", "IF", "peer", PEER_A, "persistent-keepalive", "65536"],
        ["set", "IF", "fwmark", "0x100000000"],
        ["set", "IF", "private-key", f["short"]],
        ["set", "IF", "private-key", f["trailing"]],
        ["set", "IF", "private-key", f["badkey"]],
        ["set", "IF", "private-key", "/nonexistent/key"],
        ["set", "IF", "peer", PEER_A, "listen-port", "1"],
        ["set", "IF", "remove"],
        ["set", "IF", "peer"],
        *[[command, "IF", f[name]] for command in ("setconf", "addconf", "syncconf")
          for name in files if name.startswith("conf")],
        ["setconf", "IF"], ["addconf", "IF", "/nonexistent/conf"], ["syncconf"],
    ]


def masked_allowed_ips(request: str) -> str:
    """wg sends "allowed_ip=10.0.0.1/8" as typed; wgpy sends the network (10.0.0.0/8) — the
    device masks it either way (the one intended difference on the wire)."""
    lines = []
    for line in request.split("\n"):
        if line.startswith("allowed_ip="):
            network = ipaddress.ip_network(line.partition("=")[2], strict=False)
            line = f"allowed_ip={network}"
        lines.append(line)
    return "\n".join(lines)


def test_write_commands_send_the_same_requests(runner: Runner, run_dir: Path,
                                               daemons: dict[str, ScriptedDaemon],
                                               tmp_path: Path) -> None:
    # syncconf reads the device first: give it peers, one of them also in the file
    state = DeviceState(peers=[PeerState(public_key=k(21)), PeerState(public_key=k(50)),
                               PeerState(public_key=k(51))])
    name = "wgcwrite"
    daemon = daemons[name] = ScriptedDaemon(run_dir / f"{name}.sock", format_get(state))
    files = write_files(tmp_path)
    sent_something = 0
    for args in set_cases(files):
        argv = [name if a == "IF" else a for a in args]
        before = len(daemon.requests)
        wg = runner.run("wg", argv, run_dir=run_dir)
        wg_requests = daemon.requests[before:]
        wgpy = runner.run("wgpy", argv, run_dir=run_dir)
        wgpy_requests = daemon.requests[before + len(wg_requests):]
        if args[0] in ("setconf", "addconf", "syncconf") and wg.returncode == 1 and wg.stderr:
            # wgpy names file and line before wg's message: "<file>:<line>: <wg's line>"
            first, _, rest = wgpy.stderr.partition(b"\n")
            path = args[2] if len(args) > 2 else ""
            if path and first.startswith(path.encode() + b":"):
                first = first.split(b": ", 1)[1]
                wgpy = Result(wgpy.stdout, first + b"\n" + rest, wgpy.returncode)
        assert_same(wg, wgpy, what=" ".join(argv))
        assert wgpy_requests == [masked_allowed_ips(r) for r in wg_requests], " ".join(argv)
        sent_something += any(r.startswith("set=1") for r in wg_requests)
    assert sent_something >= 15  # most cases really reached the daemon


def test_endpoint_resolution_retries_like_wg(runner: Runner) -> None:
    """No DNS server is reachable in the test namespace: a temporary failure, retried."""
    for retries in ("0", "1"):
        args = ["set", "wgcnone", "peer", PEER_A, "endpoint", "no-such-host.invalid:5"]
        wg, wgpy = runner.both(args, env={"WG_ENDPOINT_RESOLUTION_RETRIES": retries})
        assert_same(wg, wgpy, what=f"retries={retries}")
        assert wg.returncode == 1
        assert wg.stderr.count(b"Trying again in 1.00 seconds...") == int(retries)
    wg, wgpy = runner.both(["set", "wgcnone", "peer", PEER_A, "endpoint", "x.invalid:5"],
                           env={"WG_ENDPOINT_RESOLUTION_RETRIES": "bogus"})
    assert_same(wg, wgpy)


def test_no_interfaces(runner: Runner, run_dir: Path) -> None:
    for args in ([], ["show"], ["show", "all", "dump"], ["show", "all", "bogus"],
                 ["show", "interfaces"]):
        wg, wgpy = runner.both(args, run_dir=run_dir)
        assert_same(wg, wgpy, what=" ".join(args))
        assert wg.stdout == b""


def test_config_errors_name_file_and_line(runner: Runner, tmp_path: Path) -> None:
    files = write_files(tmp_path)
    result = runner.run("wgpy", ["setconf", "wgcnone", str(files["conf-badcidr"])])
    assert result.returncode == 1
    assert result.stderr == (f"{files['conf-badcidr']}:3: AllowedIP is not in the correct "
                             "format: `10.0.0.0/40'\nConfiguration parsing error\n").encode()


def test_daemon_errors_reported_like_wg(runner: Runner, run_dir: Path,
                                        daemons: dict[str, ScriptedDaemon]) -> None:
    for name, code in (("wgcinuse", errno.EADDRINUSE), ("wgcinval", errno.EINVAL)):
        daemons[name] = ScriptedDaemon(run_dir / f"{name}.sock", "errno=0\n\n", set_errno=code)
        wg, wgpy = runner.both(["set", name, "listen-port", "1"], run_dir=run_dir)
        assert_same(wg, wgpy)
        assert wg.returncode == 1 and os.strerror(code).encode() in wg.stderr
    # a socket with no daemon behind it: wg removes it and falls back to the kernel (which,
    # with the module, says the name has no device; wgpy says so on any host)
    for tool, reason in zip(TOOLS, (b"Protocol not supported", b"No such device")):
        stale = run_dir / "wgcstale.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(stale))
        result = runner.run(tool, ["show", "wgcstale"], run_dir=run_dir)
        assert result.returncode == 1
        assert result.stderr == b"Unable to access interface: " + reason + b"\n"
        assert not stale.exists()


def test_keys_interchangeable_with_wg(runner: Runner, tmp_path: Path) -> None:
    for command in ("genkey", "genpsk"):
        text = runner.run("wgpy", [command]).stdout
        assert len(text) == 45 and text.endswith(b"\n")
        key_from_base64(text.decode())
    private = runner.run("wgpy", ["genkey"]).stdout
    wg, wgpy = runner.both(["pubkey"], input=private)
    assert_same(wg, wgpy)
    assert wg.stdout.strip() == key_to_base64(public_key(key_from_base64(private.decode()))
                                              ).encode()
    wg_private = runner.run("wg", ["genkey"]).stdout
    wg, wgpy = runner.both(["pubkey"], input=wg_private)
    assert_same(wg, wgpy)
    for bad in (b"", b"short\n", b"A" * 43 + b"B\n", private.strip() + b" x\n",
                private.strip() + b"\0\0 \t\n", b"\xff" * 44, b" " + private):
        wg, wgpy = runner.both(["pubkey"], input=bad)
        assert_same(wg, wgpy, what=repr(bad))
    for args in (["genkey", "x"], ["genpsk", "x"], ["pubkey", "x"], ["bogus"], ["--help"],
                 ["help"], ["show", "-h"]):
        wg, wgpy = runner.both(args)
        assert_same(wg, wgpy, what=" ".join(args))
    # a key file written by wgpy is private, and wg's warning appears as with wg
    for tool in TOOLS:
        target = tmp_path / f"{tool}.key"
        target.touch(mode=0o644)
        target.chmod(0o644)
        with open(target, "wb") as handle:
            subprocess.run(runner.argv(tool, ["genkey"], runner.netns), stdout=handle,
                           check=True)
    assert (tmp_path / "wgpy.key").stat().st_mode & 0o077 == 0
    loose = tmp_path / "loose.key"
    for tool in TOOLS:
        loose.touch()
        loose.chmod(0o666)
        with open(loose, "wb") as handle:
            result = subprocess.run(runner.argv(tool, ["genkey"], runner.netns), stdout=handle,
                                    stderr=subprocess.PIPE, check=True)
        assert result.stderr == (b"Warning: writing to world accessible file.\n"
                                 b"Consider setting the umask to 077 and trying again.\n")


def test_strip_config_same_as_wg_quick(tmp_path: Path) -> None:
    """conf.strip_config keeps exactly the lines `wg-quick strip` keeps."""
    from wgpy.conf import strip_config

    text = (
        "# top\n[Interface]\n  Address = 10.0.0.1/24\nPrivateKey = "
        f"{key_to_base64(k(60))}  \npostup = x # y\n\tTable=off\nDNS=1.1.1.1\nSaveConfig = true\n"
        f"# comment\n[Peer]\nPublicKey = {PEER_A}\nDNS = 1.1.1.1\n[Interface]\nMTU = 1280\n"
        "ListenPort=5\n  # indented comment  \n[interface]\nmtu=1\nPre Up = kept: not a key\n"
        "PreDown=a=b\n[Peer]x\nPostDown = kept: not in [Interface]\n"
    )
    path = tmp_path / "wgcstrip0.conf"
    path.write_text(text)
    path.chmod(0o600)
    result = subprocess.run(["wg-quick", "strip", str(path)], capture_output=True, check=False)
    assert result.returncode == 0 and result.stderr == b"", result
    assert (strip_config(text) + "\n").encode() == result.stdout
