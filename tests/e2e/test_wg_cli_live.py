"""`wgpy` against the real `wg` on live userspace WireGuard devices (issue 4).

Write commands: two namespaces, one device each, configured identically; every step runs `wg`
on one device and `wgpy` on the other with the same arguments. Output and exit status must be
equal (interface names aside) and so must the device state afterwards — also after rejected
commands, which must change nothing.

Show commands: a tunnel with real handshakes and traffic, both tools reading the same devices.

Parameterized by implementation (IMPLEMENTATIONS): wireguard-go and wgpy-daemon.
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import WIREGUARD_RUN_DIR, Netns, Topology, parse_wg_dump
from test_wg_cli import (
    Result,
    Runner,
    as_on_a_kernel_host,
    assert_same,
    assert_same_as_wg,
    write_wgpy_as_wg,
)

from wgpy.keys import generate_preshared_key, generate_private_key, key_to_base64, public_key

NETNS_PREFIX = "wgc"
pytestmark = pytest.mark.e2e

Starter = Callable[[Topology, Netns, str], Any]
IMPLEMENTATIONS: dict[str, Starter] = {
    "wireguard-go": lambda topo, ns, ifname: topo.start_wireguard_go(ns, ifname),
    "wgpy-daemon": lambda topo, ns, ifname: topo.start_wgpy_daemon(ns, ifname),
}


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    with tempfile.TemporaryDirectory(prefix="wgc-bin-") as directory:
        yield Runner(write_wgpy_as_wg(Path(directory)))


def b64key(private: bool = True) -> str:
    key = generate_private_key()
    return key_to_base64(key if private else public_key(key))


def device_state(runner: Runner, ns: Netns, ifname: str) -> dict[str, Any]:
    """The configuration as the real wg dumps it, order-independent (peers by key, IPs
    sorted), without traffic counters."""
    result = runner.run("wg", ["show", ifname, "dump"], netns=ns.name)
    assert result.returncode == 0, result.text()
    dump = parse_wg_dump(result.stdout.decode())
    peers = {}
    for key, peer in dump.peers.items():
        fields = dict(vars(peer))
        fields["allowed_ips"] = sorted(fields["allowed_ips"])
        # Counters move on their own (a peer with an endpoint and a keepalive may send
        # handshake initiations); they are compared by the show tests, not here.
        for volatile in ("rx_bytes", "tx_bytes", "latest_handshake"):
            del fields[volatile]
        peers[key] = fields
    return {"private_key": dump.private_key, "public_key": dump.public_key,
            "listen_port": dump.listen_port, "fwmark": dump.fwmark, "peers": peers}


def normalize_name(*names: str) -> Callable[[bytes], bytes]:
    def normalize(data: bytes) -> bytes:
        for name in names:
            data = data.replace(name.encode(), b"IF")
        return data
    return normalize


class WriteCase:
    def __init__(self, args: list[str], changes: bool) -> None:
        self.args = args
        self.changes = changes  # False: must be rejected and leave the device unchanged


def write_cases(files: dict[str, Path]) -> list[WriteCase]:
    f = {name: str(path) for name, path in files.items()}
    p1, p2, p3 = files["peers"].read_text().split()
    ok = lambda *a: WriteCase(list(a), True)
    bad = lambda *a: WriteCase(list(a), False)
    return [
        ok("set", "IF", "listen-port", "51999", "fwmark", "0x42", "private-key", f["key2"]),
        ok("set", "IF", "fwmark", "off", "listen-port", "51998"),  # (0 would pick a random port)
        ok("set", "IF", "peer", p3, "endpoint", "192.168.5.5:5", "allowed-ips",
           "10.3.0.0/16, fd03::/64", "persistent-keepalive", "25", "preshared-key", f["psk"]),
        ok("set", "IF", "peer", p3, "endpoint", "[fd00::9]:51820", "allowed-ips", "10.4.0.1/16",
           "persistent-keepalive", "off", "preshared-key", f["empty"]),
        ok("set", "IF", "peer", p1, "allowed-ips", ""),
        ok("set", "IF", "peer", p2, "remove", "peer", p1, "endpoint", "localhost:7"),
        ok("set", "IF", "private-key", f["empty"]),
        bad("set", "IF", "peer", "not-a-key", "allowed-ips", "10.9.0.0/16"),
        bad("set", "IF", "peer", p1, "allowed-ips", "10.9.0.0/33"),
        bad("set", "IF", "peer", p1, "allowed-ips", "10.9.0/16"),
        bad("set", "IF", "peer", p1, "allowed-ips", "fd00::/64,", "endpoint", "1.2.3.4:5"),
        bad("set", "IF", "peer", p1, "endpoint", "192.168.5.5"),
        bad("set", "IF", "peer", p1, "endpoint", "[fd00::1:5"),
        bad("set", "IF", "peer", p1, "endpoint", "no-such-host.invalid:51820"),
        bad("set", "IF", "peer", p1, "persistent-keepalive", "-1"),
        bad("set", "IF", "listen-port", "65536x"),
        bad("set", "IF", "fwmark", "0xfffffffff"),
        bad("set", "IF", "private-key", f["badkey"]),
        bad("set", "IF", "private-key", "/nonexistent"),
        bad("set", "IF", "peer", p1, "listen-port", "5"),
        ok("setconf", "IF", f["conf"]),
        ok("addconf", "IF", f["conf-add"]),
        ok("syncconf", "IF", f["conf-sync"]),
        ok("addconf", "IF", f["conf-add"]),
        ok("syncconf", "IF", f["conf-nopeers"]),
        ok("setconf", "IF", f["conf"]),
        bad("setconf", "IF", f["conf-quick"]),
        bad("setconf", "IF", f["conf-badkey"]),
        bad("addconf", "IF", f["conf-badcidr"]),
        bad("syncconf", "IF", f["conf-badendpoint"]),
        bad("setconf", "IF", f["conf-nopubkey"]),
        bad("setconf", "IF", "/nonexistent.conf"),
        bad("setconf", "IF"),
        bad("set", "wgcnoexist0", "listen-port", "1"),
        bad("setconf", "wgcnoexist0", f["conf"]),
        bad("show", "wgcnoexist0"),
        bad("showconf", "wgcnoexist0"),
    ]


def make_files(directory: Path) -> dict[str, Path]:
    peers = [b64key(private=False) for _ in range(3)]
    p1, p2, p3 = peers
    contents = {
        "peers": " ".join(peers),
        "key1": b64key() + "\n",
        "key2": b64key() + "\n",
        "psk": key_to_base64(generate_preshared_key()) + "\n",
        "empty": "",
        "badkey": "x" * 44,
        "base": f"[Interface]\nListenPort = 51820\nPrivateKey = {b64key()}\n\n"
                f"[Peer]\nPublicKey = {p1}\nAllowedIPs = 10.1.0.0/16, fd01::/64\n"
                f"Endpoint = 192.168.5.1:51820\n\n"
                f"[Peer]\nPublicKey = {p2}\nAllowedIPs = 10.2.0.0/16\nPersistentKeepalive = 5\n",
        "conf": f"# a server\n[Interface]\nPrivateKey = {b64key()}\nListenPort = 51830\n"
                f"FwMark = 1234\n\n[Peer]  # first\nPublicKey = {p1}\nPresharedKey = "
                f"{key_to_base64(generate_preshared_key())}\nAllowedIPs = 10.1.0.0/16\n"
                f"AllowedIPs = fd01::/64\nEndpoint = [fd00::1]:51820\n"
                f"PersistentKeepalive = 15\n",
        "conf-add": f"[Peer]\nPublicKey = {p2}\nAllowedIPs = 10.2.0.0/16\n"
                    f"Endpoint = 192.168.5.2:51820\n[Peer]\nPublicKey = {p3}\n",
        "conf-sync": f"[Interface]\nListenPort = 51840\n[Peer]\nPublicKey = {p3}\n"
                     f"AllowedIPs = 10.3.0.0/16\n",
        "conf-nopeers": "[Interface]\nListenPort = 51850\n",
        "conf-quick": "[Interface]\nAddress = 10.0.0.1/24\nListenPort = 1\n",
        "conf-badkey": f"[Interface]\nListenPort = 1\n[Peer]\nPublicKey = {p1[:-2]}=\n",
        "conf-badcidr": f"[Peer]\nPublicKey = {p1}\nAllowedIPs = 10.0.0.0/8, fd00::/200\n",
        "conf-badendpoint": f"[Peer]\nPublicKey = {p1}\nEndpoint = fd00::1:51820x\n",
        "conf-nopubkey": "[Interface]\nListenPort = 1\n[Peer]\nAllowedIPs = 10.0.0.0/8\n",
    }
    paths = {}
    for name, content in contents.items():
        path = directory / name
        path.write_text(content)
        path.chmod(0o600)
        paths[name] = path
    return paths


def strip_location(result: Result, path: str) -> Result:
    """wgpy puts "<file>:<line>: " before wg's config error line; drop it to compare."""
    first, sep, rest = result.stderr.partition(b"\n")
    prefix = path.encode() + b":"
    if path and first.startswith(prefix):
        first = first[len(prefix):].split(b": ", 1)[1]
    return Result(result.stdout, first + sep + rest, result.returncode)


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
def test_write_commands_leave_the_same_state(topo: Topology, runner: Runner,
                                             implementation: str) -> None:
    start = IMPLEMENTATIONS[implementation]
    files = make_files(topo.tmpdir)
    sides = {}
    for tool in ("wg", "wgpy"):
        ns = topo.netns(tool)
        ifname = topo.ifname()
        start(topo, ns, ifname)
        setup = runner.run("wg", ["setconf", ifname, str(files["base"])], netns=ns.name)
        assert setup.returncode == 0, setup.text()
        sides[tool] = (ns, ifname)
    check_write_cases(runner, files, sides)


def check_write_cases(runner: Any, files: dict[str, Path],
                      sides: dict[str, tuple[Netns, str]]) -> None:
    """Every write case through `wg` on sides["wg"] and `wgpy` on sides["wgpy"] (namespace,
    interface; both set up alike): the same output and exit status, and the two devices in
    the same state after each; a rejected command changes nothing. One list for every
    implementation (the kernel group runs it on kernel links)."""
    (wg_ns, wg_if), (py_ns, py_if) = sides["wg"], sides["wgpy"]
    normalize = normalize_name(wg_if, py_if)
    before = device_state(runner, wg_ns, wg_if)
    assert before == device_state(runner, py_ns, py_if)
    assert len(before["peers"]) == 2

    for case in write_cases(files):
        wg = runner.run("wg", [wg_if if a == "IF" else a for a in case.args], netns=wg_ns.name)
        wgpy = runner.run("wgpy", [py_if if a == "IF" else a for a in case.args],
                          netns=py_ns.name)
        if case.args[0] in ("setconf", "addconf", "syncconf") and len(case.args) == 3:
            wgpy = strip_location(wgpy, case.args[2])
        what = " ".join(case.args)
        if "wgcnoexist0" in case.args and b"Protocol not supported" in wg.stderr:
            wg = as_on_a_kernel_host(wg)  # no module here: wgpy answers as wg with it
        assert_same(wg, wgpy, normalize, what=what)
        assert (wg.returncode == 0) == case.changes, f"{what}\n{wg.text()}"
        after = device_state(runner, wg_ns, wg_if)
        assert device_state(runner, py_ns, py_if) == after, what
        if not case.changes:
            assert after == before, f"rejected command changed the device: {what}"
        before = after


OUTER_A = ("192.168.78.1/24", "fd00:78::1/64")
OUTER_B = ("192.168.78.2/24", "fd00:78::2/64")


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
def test_show_live_tunnel_same_as_wg(topo: Topology, runner: Runner,
                                     implementation: str) -> None:
    start = IMPLEMENTATIONS[implementation]
    a, b = topo.netns("a"), topo.netns("b")
    topo.veth(a, b, OUTER_A, OUTER_B)
    a_if, b_if = topo.ifname(), topo.ifname()
    start(topo, a, a_if)
    start(topo, b, b_if)
    end_a, end_b = topo.configure_pair(a, a_if, b, b_if, "192.168.78.1", "fd00:78::2",
                                       preshared_key=True)
    a.ping(end_b.ip4, count=2)
    b.ping(end_a.ip6, count=2)
    # only this test's devices in /var/run/wireguard for `show all` / `show interfaces`
    run_dir = topo.tmpdir / "run"
    run_dir.mkdir()
    for ifname in (a_if, b_if):
        (run_dir / f"{ifname}.sock").symlink_to(WIREGUARD_RUN_DIR / f"{ifname}.sock")
    fields = ["public-key", "private-key", "listen-port", "fwmark", "peers", "preshared-keys",
              "endpoints", "allowed-ips", "latest-handshakes", "transfer",
              "persistent-keepalive", "dump"]
    cases = [["show", a_if], ["show", b_if], ["showconf", a_if], ["showconf", b_if],
             ["show"], ["show", "all"], ["show", "interfaces"],
             *[["show", a_if, field] for field in fields],
             *[["show", "all", field] for field in fields]]
    for env in ({}, {"WG_HIDE_KEYS": "never", "WG_COLOR_MODE": "always"}):
        for args in cases:
            # b's link is not in a's namespace: wg there answers as on a host without the module
            adjust = as_on_a_kernel_host if b_if in args else None
            assert_same_as_wg(runner, args, what=f"{' '.join(args)} {env}", adjust_wg=adjust,
                              netns=a.name, run_dir=run_dir, env=env)
    shown = runner.run("wgpy", ["show", a_if], netns=a.name).stdout.decode()
    assert "latest handshake: " in shown and "transfer: " in shown
    assert "preshared key: (hidden)" in shown
    # what wgpy reads from the device is what wg reads
    dump = parse_wg_dump(runner.run("wgpy", ["show", a_if, "dump"], netns=a.name).stdout.decode())
    peer = dump.peers[end_b.public_key]
    assert peer.endpoint == "[fd00:78::2]:51821"
    assert sorted(peer.allowed_ips) == sorted(
        [f"{end_b.ip4}/32", f"{ipaddress.ip_address(end_b.ip6)}/128"])
    assert peer.rx_bytes > 0 and peer.latest_handshake > 0
