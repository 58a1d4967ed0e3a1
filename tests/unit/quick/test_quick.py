"""wgpy-quick's pure parts: file location and checks, nft text, DNS fragment, the SetRequest
built from a file, route order, undo stack, MTU choice, the CLI's usage. (The showconf text has
one formatter, wgpy/show.py, tested in tests/unit/cli/test_wg_show.py and against wg itself in
tests/e2e/test_wg_cli.py.)"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy.cli import wg_quick
from wgpy.conf import ConfigError
from wgpy.keys import generate_private_key, key_to_base64, public_key
from wgpy.model import DeviceState, PeerState
from wgpy.quick import config as quick_config
from wgpy.quick import dns, firewall
from wgpy.quick.config import QuickError, resolve_path, routing_table_number
from wgpy.quick.device import set_request_from_config
from wgpy.quick.interface import userspace_command
from wgpy.quick.netlink import RouteInfo
from wgpy.quick.up import UndoStack, Up, _routes_to_add

PRIVATE = generate_private_key()
PEER = public_key(generate_private_key())


def conf_text(extra_interface: str = "", extra_peer: str = "") -> str:
    return (
        f"[Interface]\nPrivateKey = {key_to_base64(PRIVATE)}\nAddress = 10.0.0.1/24\n"
        f"{extra_interface}\n[Peer]\nPublicKey = {key_to_base64(PEER)}\n"
        f"AllowedIPs = 10.0.0.2/32\n{extra_peer}"
    )


def write(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


# --- locating the file ---------------------------------------------------------------------


def test_interface_name_means_etc_wireguard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quick_config, "CONFIG_DIR", tmp_path)
    write(tmp_path, "wg7.conf", conf_text())
    assert resolve_path("wg7") == ((tmp_path / "wg7.conf").resolve(), "wg7")


def test_path_base_name_is_the_interface(tmp_path: Path) -> None:
    path = write(tmp_path, "office-vpn.conf", conf_text())
    assert resolve_path(str(path)) == (path.resolve(), "office-vpn")


@pytest.mark.parametrize("name", ["sixteen-chars-xx.conf", "bad name.conf", "wg0.cfg", ".conf"])
def test_invalid_interface_names_are_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, conf_text())
    with pytest.raises(QuickError, match="must be a valid interface name"):
        resolve_path(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QuickError, match="does not exist"):
        resolve_path(str(tmp_path / "wg0.conf"))


@pytest.mark.parametrize(("file_mode", "dir_mode", "warns"), [
    (0o600, 0o755, False),
    (0o644, 0o755, True),
    (0o644, 0o750, False),  # wg-quick ANDs the file's and the directory's "other" bits
    (0o606, 0o701, False),
    (0o604, 0o705, True),
])
def test_world_accessible_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file_mode: int, dir_mode: int, warns: bool
) -> None:
    directory = tmp_path / "conf"
    directory.mkdir()
    path = write(directory, "wg0.conf", conf_text(), file_mode)
    directory.chmod(dir_mode)
    try:
        quick_config.load(str(path))
    finally:
        directory.chmod(0o700)
    err = capsys.readouterr().err
    assert ("is world accessible" in err) == warns
    if warns:
        assert f"Warning: `{path.resolve()}' is world accessible" in err


def test_load_rejects_bad_table_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "wg0.conf", conf_text("MTU = 1400\nTable = nope\n"))
    with pytest.raises(ConfigError) as info:
        quick_config.load(str(path))
    assert (info.value.line, info.value.key) == (5, "Table")
    assert str(info.value).startswith(f"{path.resolve()}:5: Table:")


@pytest.mark.parametrize(("text", "number"), [("1234", 1234), ("main", 254), ("local", 255)])
def test_routing_table_numbers(text: str, number: int) -> None:
    assert routing_table_number(text) == number


@pytest.mark.parametrize("text", ["0", "-1", "4294967296", "nosuchtable", "12a"])
def test_routing_table_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        routing_table_number(text)


# --- what gets applied ---------------------------------------------------------------------


def test_set_request_from_config(tmp_path: Path) -> None:
    path = write(tmp_path, "wg0.conf", conf_text(
        "ListenPort = 51000\nFwMark = 0x10\n", "Endpoint = [fd00::1]:51820\nPersistentKeepalive = 5\n"))
    request = set_request_from_config(quick_config.load(str(path)).config)
    assert (request.private_key, request.listen_port, request.fwmark) == (PRIVATE, 51000, 16)
    assert not request.replace_peers  # addconf, like wg-quick
    (peer,) = request.peers
    assert peer.public_key == PEER
    assert peer.endpoint == ("fd00::1", 51820)
    assert peer.persistent_keepalive == 5
    assert peer.replace_allowed_ips
    assert peer.allowed_ips == [ipaddress.ip_network("10.0.0.2/32")]


def test_firewall_ruleset_is_wg_quicks() -> None:
    addresses = [ipaddress.ip_interface("10.0.0.1/24"), ipaddress.ip_interface("fd00::1/64")]
    assert firewall.ruleset("wg0", 4, 51820, addresses) == (
        "add table ip wg-quick-wg0\n"
        "add chain ip wg-quick-wg0 preraw { type filter hook prerouting priority -300; }\n"
        "add chain ip wg-quick-wg0 premangle { type filter hook prerouting priority -150; }\n"
        "add chain ip wg-quick-wg0 postmangle { type filter hook postrouting priority -150; }\n"
        'add rule ip wg-quick-wg0 preraw iifname != "wg0" ip daddr 10.0.0.1 '
        "fib saddr type != local drop\n"
        "add rule ip wg-quick-wg0 postmangle meta l4proto udp mark 51820 ct mark set mark\n"
        "add rule ip wg-quick-wg0 premangle meta l4proto udp meta mark set ct mark\n"
    )
    assert "ip6 daddr fd00::1 " in firewall.ruleset("wg0", 6, 51820, addresses)
    assert "10.0.0.1" not in firewall.ruleset("wg0", 6, 51820, addresses)


def test_iptables_ruleset_is_wg_quicks() -> None:
    addresses = [ipaddress.ip_interface("10.0.0.1/24"), ipaddress.ip_interface("fd00::1/64")]
    marker = '-m comment --comment "wg-quick(8) rule for wg0"'
    assert firewall.iptables_ruleset("wg0", 6, 51820, addresses) == (
        "*raw\n"
        f"-I PREROUTING ! -i wg0 -d fd00::1 -m addrtype ! --src-type LOCAL -j DROP {marker}\n"
        "COMMIT\n*mangle\n"
        f"-I POSTROUTING -m mark --mark 51820 -p udp -j CONNMARK --save-mark {marker}\n"
        f"-I PREROUTING -p udp -j CONNMARK --restore-mark {marker}\n"
        "COMMIT\n"
    )


def test_dns_fragment() -> None:
    assert dns.fragment(["10.0.0.1", "fd00::53"], ["corp.example", "lab.example"]) == (
        "nameserver 10.0.0.1\nnameserver fd00::53\nsearch corp.example lab.example\n"
    )
    assert dns.fragment(["10.0.0.1"], []) == "nameserver 10.0.0.1\n"


def test_dns_record_prefix_from_interface_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order = tmp_path / "interface-order"
    order.write_text("lo.inet6\nlo.inet*\ntun*\ntap*\n")
    monkeypatch.setattr(dns, "INTERFACE_ORDER", order)
    fake = tmp_path / "bin" / "resolvconf"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert dns.record_prefix() == "tun."
    order.unlink()
    assert dns.record_prefix() == ""


networks = st.one_of(
    st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
              st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(networks, max_size=8, unique=True))
def test_route_order_is_wg_quicks_sort(nets: list[ipaddress.IPv4Network]) -> None:
    state = DeviceState(peers=[PeerState(public_key=PEER, allowed_ips=list(nets))])
    text = "".join(f"{n}\n" for n in nets)
    expected = subprocess.run(
        ["sort", "-nr", "-k", "2", "-t", "/"], input=text, capture_output=True, text=True,
        env={**os.environ, "LC_ALL": "C"}, check=True,
    ).stdout.split()
    assert [str(n) for n in _routes_to_add(state)] == expected


def test_undo_stack_unwinds_newest_first_past_failures() -> None:
    done: list[str] = []
    stack = UndoStack()
    stack.push("a", lambda: done.append("a"))

    def broken() -> None:
        raise OSError("boom")

    stack.push("b", broken)
    stack.push("c", lambda: done.append("c"))
    assert stack.unwind() == ["b: boom"]
    assert done == ["c", "a"]
    assert stack.unwind() == []


class FakeNetlink:
    def __init__(self, routes: dict[str, RouteInfo], default: RouteInfo | None,
                 mtus: dict[int, int]) -> None:
        self.routes, self.default, self.mtus = routes, default, mtus

    def route_get(self, address: object) -> RouteInfo | None:
        return self.routes.get(str(address))

    def default_route(self) -> RouteInfo | None:
        return self.default

    def link_mtu(self, index: int) -> int:
        return self.mtus[index]


def _mtu(peers: list[tuple[str, int]], netlink: FakeNetlink) -> int:
    state = DeviceState(peers=[PeerState(public_key=PEER, endpoint=e) for e in peers])
    up = Up.__new__(Up)
    up.netlink = netlink  # type: ignore[assignment]
    return up.automatic_mtu(state)


def test_automatic_mtu() -> None:
    links = {2: 1500, 3: 9000, 4: 1400}
    routes = {"192.0.2.1": RouteInfo(oif=3, mtu=None), "192.0.2.2": RouteInfo(oif=2, mtu=1300),
              "fd00::1": RouteInfo(oif=4, mtu=None)}
    netlink = FakeNetlink(routes, RouteInfo(oif=2, mtu=None), links)
    assert _mtu([("192.0.2.1", 1)], netlink) == 9000 - 80
    assert _mtu([("192.0.2.1", 1), ("fd00::1", 1)], netlink) == 1400 - 80  # the smallest
    assert _mtu([("192.0.2.2", 1)], netlink) == 1300 - 80  # a route's own mtu wins
    assert _mtu([], netlink) == 1500 - 80  # no endpoint: the default route's device
    assert _mtu([], FakeNetlink({}, None, links)) == 1500 - 80  # nothing known: 1500


def test_userspace_command() -> None:
    assert userspace_command({}) == ["wgpy-daemon"]
    assert userspace_command({"WG_QUICK_USERSPACE_IMPLEMENTATION": "wireguard-go"}) == [
        "wireguard-go"]
    assert userspace_command({"WG_QUICK_USERSPACE_IMPLEMENTATION": "python3 -m wgpy.cli.daemon"}) \
        == ["python3", "-m", "wgpy.cli.daemon"]


# --- CLI ----------------------------------------------------------------------------------------


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert wg_quick.main([]) == 1
    assert "Usage: wgpy-quick [ up | down | save | strip ]" in capsys.readouterr().err
    assert wg_quick.main(["--help"]) == 0
    assert wg_quick.main(["sideways", "wg0"]) == 1


def test_strip_prints_config_without_quick_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "wg0.conf", conf_text("DNS = 10.0.0.53\nPostUp = echo hi\n"))
    assert wg_quick.main(["strip", str(path)]) == 0
    out = capsys.readouterr().out
    assert "DNS" not in out and "PostUp" not in out and "Address" not in out
    assert f"PrivateKey = {key_to_base64(PRIVATE)}\n" in out
    assert out.endswith("AllowedIPs = 10.0.0.2/32\n\n")


def test_config_error_is_reported_with_file_line_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file is parsed before anything is touched, so `up` stops at the bad line. (`up`
    # itself is replaced: this test runs in the root namespace and must never change it.)
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def must_not_run(quick: object) -> None:
        raise AssertionError("up ran although the file does not parse")

    monkeypatch.setitem(wg_quick.COMMANDS, "up", must_not_run)
    path = write(tmp_path, "wg0.conf", conf_text("MTU = big\n"))
    assert wg_quick.main(["up", str(path)]) == 1
    assert f"wgpy-quick: {path.resolve()}:4: MTU: " in capsys.readouterr().err


def test_strip_does_not_validate_like_wg_quick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "wg0.conf", "[Interface]\nPrivateKey = <placeholder>\nMTU = 1\n")
    assert wg_quick.main(["strip", str(path)]) == 0
    assert capsys.readouterr().out == "[Interface]\nPrivateKey = <placeholder>\n\n"


class LinkNetlink:
    """Just enough Netlink for add_interface: `add` fails or succeeds, links can appear."""

    def __init__(self, kernel_error: int | None) -> None:
        self.kernel_error = kernel_error
        self.links: set[str] = set()

    def add_wireguard_link(self, ifname: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        if self.kernel_error is not None:
            raise NetlinkError(self.kernel_error, "no")
        self.links.add(ifname)

    def link_index(self, ifname: str) -> int | None:
        return 7 if ifname in self.links else None


def test_kernel_module_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    from wgpy.quick import interface

    def no_userspace(*args: object, **kwargs: object) -> None:
        raise AssertionError("userspace started although the kernel link was created")

    monkeypatch.setattr(interface.subprocess, "run", no_userspace)
    netlink = LinkNetlink(kernel_error=None)
    interface.add_interface(netlink, "wg0")  # type: ignore[arg-type]
    assert netlink.links == {"wg0"}


def test_userspace_fallback_and_its_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from wgpy.quick import interface

    started: list[list[str]] = []
    netlink = LinkNetlink(kernel_error=errno.EOPNOTSUPP)

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        started.append(argv)
        netlink.links.add(argv[-1])
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(interface.subprocess, "run", fake_run)
    monkeypatch.setattr(interface, "KERNEL_MODULE_DIR", tmp_path / "no-module")
    monkeypatch.setenv("WG_QUICK_USERSPACE_IMPLEMENTATION", "sh -c true")
    interface.add_interface(netlink, "wg0")  # type: ignore[arg-type]
    assert started == [["sh", "-c", "true", "wg0"]]

    # The module is loaded but refused the link: that is an error, not a reason to fall back.
    monkeypatch.setattr(interface, "KERNEL_MODULE_DIR", tmp_path)
    with pytest.raises(QuickError, match="Operation not supported"):
        interface.add_interface(netlink, "wg1")
    assert len(started) == 1


def test_an_os_error_names_its_path_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def load(target: str) -> None:
        raise PermissionError(13, "Permission denied", "/etc/wireguard/wg0.conf")

    monkeypatch.setattr(wg_quick.quick_config, "load", load)
    monkeypatch.setattr(wg_quick.os, "geteuid", lambda: 0)
    assert wg_quick.main(["up", "wg0"]) == 1
    assert capsys.readouterr().err == "wgpy-quick: /etc/wireguard/wg0.conf: Permission denied\n"
