"""`wgpy` = `wg` on kernel interfaces: show (every field, dump), showconf, set, setconf,
addconf, syncconf give byte-identical stdout, stderr and exit status, and the write commands
leave the kernel interface exactly as `wg` does (also after rejected commands, which change
nothing). wgpy runs in this process (kernlib.InProcessRunner); `wg` is the real program.

The command list and config files are the ones the userspace tests use
(tests/e2e/test_wg_cli_live.py): one list, checked against every implementation.
"""

from __future__ import annotations

import ipaddress

import pytest
from kernlib import InProcessRunner, add_kernel_link
from netns import Topology, parse_wg_dump
from test_wg_cli import Result, assert_same_as_wg
from test_wg_cli_live import OUTER_A, OUTER_B, check_write_cases, make_files


@pytest.fixture(scope="module")
def runner() -> InProcessRunner:
    return InProcessRunner()


def test_write_commands_leave_the_same_state(mtopo: Topology, runner: InProcessRunner) -> None:
    files = make_files(mtopo.tmpdir)
    sides = {}
    for tool in ("wg", "wgpy"):
        ns = mtopo.netns(f"w{tool}")
        ifname = add_kernel_link(mtopo, ns)
        setup = runner.run("wg", ["setconf", ifname, str(files["base"])], netns=ns.name)
        assert setup.returncode == 0, setup.text()
        sides[tool] = (ns, ifname)
    check_write_cases(runner, files, sides)


def test_show_live_tunnel_same_as_wg(mtopo: Topology, runner: InProcessRunner) -> None:
    a, b = mtopo.netns("sa"), mtopo.netns("sb")
    mtopo.veth(a, b, OUTER_A, OUTER_B)
    a_if, b_if = add_kernel_link(mtopo, a), add_kernel_link(mtopo, b)
    end_a, end_b = mtopo.configure_pair(a, a_if, b, b_if, "192.168.78.1", "fd00:78::2",
                                        preshared_key=True, persistent_keepalive=25)
    a.ping(end_b.ip4, count=2)
    b.ping(end_a.ip6, count=2)
    # more peers, fwmark, many allowed IPs (the kernel splits a dump over several messages)
    extra = [mtopo.genkey()[1] for _ in range(3)]
    mtopo.wg(a, "set", a_if, "fwmark", "0x1234",
             "peer", extra[0], "allowed-ips", ",".join(f"10.{i}.0.0/16" for i in range(1, 200)),
             "peer", extra[1], "endpoint", "192.0.2.7:1", "persistent-keepalive", "65535",
             "peer", extra[2], "allowed-ips", "fd10::/48,0.0.0.0/0")
    fields = ["public-key", "private-key", "listen-port", "fwmark", "peers", "preshared-keys",
              "endpoints", "allowed-ips", "latest-handshakes", "transfer",
              "persistent-keepalive", "dump"]
    cases = [["show", a_if], ["showconf", a_if], ["show"], ["show", "all"],
             ["show", "interfaces"], ["show", "wkmissing0"], ["showconf", "wkmissing0"],
             ["show", a_if, "bogus"], ["showconf"],
             *[["show", a_if, field] for field in fields],
             *[["show", "all", field] for field in fields]]
    for env in ({}, {"WG_HIDE_KEYS": "never", "WG_COLOR_MODE": "always"}):
        for args in cases:
            assert_same_as_wg(runner, args, what=f"{' '.join(args)} {env}", netns=a.name,
                              env=env)
    shown = runner.run("wgpy", ["show", a_if], netns=a.name)
    assert isinstance(shown, Result)
    text = shown.stdout.decode()
    assert "latest handshake: " in text and "transfer: " in text
    assert "preshared key: (hidden)" in text and "fwmark: 0x1234" in text
    dump = parse_wg_dump(runner.run("wgpy", ["show", a_if, "dump"], netns=a.name)
                         .stdout.decode())
    peer = dump.peers[end_b.public_key]
    # b's own initiation at link-up (persistent keepalive) goes to a's IPv4 address, a's
    # to b's IPv6: whichever authenticated packet a got last set the endpoint (kernel roaming)
    assert peer.endpoint in ("[fd00:78::2]:51821", "192.168.78.2:51821"), peer.endpoint
    assert sorted(peer.allowed_ips) == sorted(
        [f"{end_b.ip4}/32", f"{ipaddress.ip_address(end_b.ip6)}/128"])
    assert peer.rx_bytes > 0 and peer.latest_handshake > 0
    assert len(dump.peers[extra[0]].allowed_ips) == 199
