"""wgpy-quick up/down/save behaviour in namespaces: rollback, validation, hooks, tables,
SaveConfig, and state identical to what the real wg-quick makes from the same file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import sys
from pathlib import Path

import pytest
from netns import Netns, Topology
from quicklib import (
    IMPLEMENTATIONS,
    assert_restored,
    namespace_resolver,
    no_dad,
    quick_env,
    resolv_conf_seen_in,
    snapshot,
    wgpy_quick,
    write_conf,
)

NETNS_PREFIX = "wgq"


def one_side(topo: Topology) -> tuple[Netns, Netns]:
    """A namespace with an uplink (198.51.100.2/24, default route) to a peer namespace."""
    local, remote = topo.netns("local"), topo.netns("remote")
    no_dad(local)
    topo.veth(local, remote, ["198.51.100.2/24", "2001:db8:1::2/64"],
              ["198.51.100.1/24", "2001:db8:1::1/64"])
    local.run(["ip", "route", "add", "default", "via", "198.51.100.1"])
    return local, remote


def config(topo: Topology, interface: str = "", peer: str = "", allowed: str = "10.80.0.0/24",
           address: str = "Address = 10.80.0.2/24\n") -> str:
    private, _ = topo.genkey()
    _, peer_public = topo.genkey()
    return (
        f"[Interface]\nPrivateKey = {private}\n{address}{interface}\n"
        f"[Peer]\nPublicKey = {peer_public}\nAllowedIPs = {allowed}\n"
        f"Endpoint = 198.51.100.1:51820\n{peer}"
    )


def test_default_route_up_down_restores_everything(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("d")
    conf = write_conf(topo, ifname, config(topo, allowed="0.0.0.0/0, ::/0",
                                           address="Address = 10.80.0.2/32, fd80::2/128\n"))
    before = snapshot(ns)
    wgpy_quick(topo, ns, "up", conf)
    during = snapshot(ns)
    assert "lookup 51820" in during.rules4 and "lookup 51820" in during.rules6
    assert f"default dev {ifname} table 51820" in during.routes4
    assert f"default dev {ifname} table 51820" in during.routes6
    assert f"table ip6 wg-quick-{ifname}" in during.nft
    assert f'iifname != "{ifname}" ip daddr 10.80.0.2 fib saddr type != local drop' in during.nft
    assert topo.wg_dump(ns, ifname).fwmark == 51820
    wgpy_quick(topo, ns, "down", conf)
    assert_restored(before, snapshot(ns))
    assert not ns.link_exists(ifname)
    assert not Path(f"/var/run/wireguard/{ifname}.sock").exists()


def test_fwmark_table_skips_a_table_in_use_and_keeps_configured_fwmark(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ns.run(["ip", "route", "add", "blackhole", "10.99.0.0/16", "table", "51820"])
    first = topo.ifname("f")
    conf = write_conf(topo, first, config(topo, allowed="0.0.0.0/0"))
    wgpy_quick(topo, ns, "up", conf)
    assert topo.wg_dump(ns, first).fwmark == 51821
    assert "not from all fwmark 0xca6d lookup 51821" in ns.run(["ip", "rule"]).stdout
    wgpy_quick(topo, ns, "down", conf)

    second = topo.ifname("m")
    conf = write_conf(topo, second, config(topo, interface="FwMark = 0x1234\n", allowed="0.0.0.0/0"))
    wgpy_quick(topo, ns, "up", conf)
    assert "not from all fwmark 0x1234 lookup 4660" in ns.run(["ip", "rule"]).stdout
    assert f"default dev {second} " in ns.run(["ip", "route", "show", "table", "4660"]).stdout
    wgpy_quick(topo, ns, "down", conf)
    assert "4660" not in ns.run(["ip", "rule"]).stdout


@pytest.mark.parametrize(("table", "expect_main", "expect_table"), [
    ("Table = off\n", False, None),
    ("Table = 1234\n", False, "1234"),
    ("Table = auto\n", True, None),
    ("", True, None),
])
def test_table_key(topo: Topology, table: str, expect_main: bool, expect_table: str | None) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("t")
    conf = write_conf(topo, ifname, config(topo, interface=table, allowed="10.81.0.0/24"))
    wgpy_quick(topo, ns, "up", conf)
    main = ns.run(["ip", "route", "show"]).stdout
    assert (f"10.81.0.0/24 dev {ifname}" in main) == expect_main
    if expect_table:
        routes = ns.run(["ip", "route", "show", "table", expect_table]).stdout
        assert f"10.81.0.0/24 dev {ifname}" in routes
    wgpy_quick(topo, ns, "down", conf)


def test_bad_config_is_rejected_before_anything_changes(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("b")
    marker = topo.tmpdir / "preup-ran"
    text = config(topo, interface=f"PreUp = touch {marker}\n", peer="PersistentKeepalive = often\n")
    conf = write_conf(topo, ifname, text)
    line = text.splitlines().index("PersistentKeepalive = often") + 1
    before = snapshot(ns)
    result = wgpy_quick(topo, ns, "up", conf, check=False)
    assert result.returncode == 1
    assert f"{conf}:{line}: PersistentKeepalive:" in result.stderr
    assert "often" in result.stderr
    assert not ns.link_exists(ifname)
    assert not marker.exists()
    assert_restored(before, snapshot(ns))


def test_bad_table_is_rejected_with_its_line(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("b")
    conf = write_conf(topo, ifname, config(topo, interface="Table = nosuchtable\n"))
    result = wgpy_quick(topo, ns, "up", conf, check=False)
    assert result.returncode == 1
    assert re.search(rf"{re.escape(str(conf))}:\d+: Table: ", result.stderr), result.stderr
    assert not ns.link_exists(ifname)


def test_route_that_exists_rolls_back(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ns.run(["ip", "route", "add", "10.82.0.0/24", "via", "198.51.100.1"])
    ifname = topo.ifname("r")
    conf = write_conf(topo, ifname, config(topo, interface="DNS = 10.80.0.1\n",
                                           allowed="0.0.0.0/0, 10.82.0.0/24"))
    before = snapshot(ns)
    calls = topo.tmpdir / "resolvconf-calls"
    fake_bin = _fake_resolvconf(topo, calls)
    result = wgpy_quick(topo, ns, "up", conf, check=False,
                        extra_env={"PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert result.returncode == 1
    assert f"ip -4 route add 10.82.0.0/24 dev {ifname}: File exists" in result.stderr
    assert not ns.link_exists(ifname)
    assert_restored(before, snapshot(ns))  # the default route's rules and nft tables are gone
    assert calls.read_text().splitlines() == [f"-a {ifname} -m 0 -x", f"-d {ifname} -f"]


def _fake_resolvconf(topo: Topology, calls: Path) -> Path:
    directory = topo.tmpdir / "fakebin"
    directory.mkdir(exist_ok=True)
    script = directory / "resolvconf"
    script.write_text(f"#!/bin/bash\necho \"$*\" >> {calls}\ncat > /dev/null\n")
    script.chmod(0o755)
    return directory


def test_bad_address_rolls_back(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("a")
    conf = write_conf(topo, ifname, config(
        topo, address="Address = 10.80.0.2/24\nAddress = 10.80.0.2/24\n"))
    before = snapshot(ns)
    result = wgpy_quick(topo, ns, "up", conf, check=False)
    assert result.returncode == 1
    assert f"ip -4 address add 10.80.0.2/24 dev {ifname}: File exists" in result.stderr
    assert not ns.link_exists(ifname)
    assert_restored(before, snapshot(ns))


def test_failing_post_up_hook_rolls_back_policy_routing(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("h")
    conf = write_conf(topo, ifname, config(topo, interface="PostUp = echo nope >&2; exit 3\n",
                                           allowed="0.0.0.0/0"))
    before = snapshot(ns)
    result = wgpy_quick(topo, ns, "up", conf, check=False)
    assert result.returncode == 1
    assert "PostUp hook failed with status 3" in result.stderr
    assert "nope" in result.stderr
    assert not ns.link_exists(ifname)
    assert_restored(before, snapshot(ns))
    assert ns.run(["sysctl", "-n", "net.ipv4.conf.all.src_valid_mark"]).stdout == "0\n"


def test_hooks_run_in_order_with_interface_name(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("k")
    log = topo.tmpdir / "hooks.log"
    hooks = "".join(
        f"{phase} = echo {phase}{n} %i $INTERFACE >> {log}\n"
        for phase in ("PreUp", "PostUp", "PreDown", "PostDown") for n in (1, 2)
    )
    conf = write_conf(topo, ifname, config(topo, interface=hooks))
    wgpy_quick(topo, ns, "up", conf)
    assert log.read_text().splitlines() == [
        f"PreUp1 {ifname} {ifname}", f"PreUp2 {ifname} {ifname}",
        f"PostUp1 {ifname} {ifname}", f"PostUp2 {ifname} {ifname}",
    ]
    wgpy_quick(topo, ns, "down", conf)
    assert log.read_text().splitlines()[4:] == [
        f"PreDown1 {ifname} {ifname}", f"PreDown2 {ifname} {ifname}",
        f"PostDown1 {ifname} {ifname}", f"PostDown2 {ifname} {ifname}",
    ]


@pytest.mark.parametrize("tool", ["wg-quick", "wgpy-quick"])
def test_pre_up_runs_before_the_interface_exists(topo: Topology, tool: str) -> None:
    """wg-quick's cmd_up runs PreUp, then add_if: a PreUp hook sees no interface yet."""
    ns, _ = one_side(topo)
    ifname = topo.ifname("p")
    log = topo.tmpdir / "pre-up.log"
    hook = f"if ip link show %i; then echo exists >> {log}; else echo absent >> {log}; fi"
    conf = write_conf(topo, ifname, config(topo, interface=f"PreUp = {hook}\n"))
    if tool == "wg-quick":
        topo.track_interface(ns, ifname)
        ns.run(["wg-quick", "up", str(conf)], env=quick_env("wireguard-go"), timeout=60)
    else:
        wgpy_quick(topo, ns, "up", conf)
    assert log.read_text() == "absent\n"
    assert ns.link_exists(ifname)
    if tool == "wg-quick":
        ns.run(["wg-quick", "down", str(conf)], env=quick_env("wireguard-go"), timeout=60)
    else:
        wgpy_quick(topo, ns, "down", conf)


def test_up_twice_and_down_of_unknown_interface(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("u")
    conf = write_conf(topo, ifname, config(topo))
    wgpy_quick(topo, ns, "up", conf)
    again = wgpy_quick(topo, ns, "up", conf, check=False)
    assert again.returncode == 1 and f"`{ifname}' already exists" in again.stderr
    assert ns.link_exists(ifname)  # the failed second `up` did not touch the first
    wgpy_quick(topo, ns, "down", conf)
    gone = wgpy_quick(topo, ns, "down", conf, check=False)
    assert gone.returncode == 1 and f"`{ifname}' is not a WireGuard interface" in gone.stderr


def test_explicit_and_automatic_mtu(topo: Topology) -> None:
    ns, _remote = one_side(topo)
    uplink = ns.run(["ip", "-o", "route", "get", "198.51.100.1"]).stdout.split(" dev ")[1].split()[0]
    ns.run(["ip", "link", "set", uplink, "mtu", "1400"])
    ifname = topo.ifname("m")
    conf = write_conf(topo, ifname, config(topo))
    wgpy_quick(topo, ns, "up", conf)
    assert "mtu 1320 " in ns.run(["ip", "link", "show", ifname]).stdout  # 1400 - 80
    wgpy_quick(topo, ns, "down", conf)
    conf = write_conf(topo, ifname, config(topo, interface="MTU = 1280\n"))
    wgpy_quick(topo, ns, "up", conf)
    assert "mtu 1280 " in ns.run(["ip", "link", "show", ifname]).stdout
    wgpy_quick(topo, ns, "down", conf)


def test_save_config_on_down_writes_running_state_0600(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("s")
    text = config(
        topo, interface="ListenPort = 51999\nMTU = 1380\nSaveConfig = true\nPostUp = true %i\n")
    conf = write_conf(topo, ifname, text)
    wgpy_quick(topo, ns, "up", conf)
    _, new_peer = topo.genkey()
    topo.wg(ns, "set", ifname, "peer", new_peer, "allowed-ips", "10.83.0.0/24")
    ns.run(["ip", "address", "add", "10.84.0.1/24", "dev", ifname])
    conf.chmod(0o644)
    wgpy_quick(topo, ns, "down", conf)
    saved = conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    # merged into the file: the changed line in place, the runtime peer appended
    assert saved == text.replace(
        "Address = 10.80.0.2/24\n", "Address = 10.80.0.2/24, 10.84.0.1/24\n"
    ) + f"\n[Peer]\nPublicKey = {new_peer}\nAllowedIPs = 10.83.0.0/24\n"
    # The saved file brings the same device back, and saving it again changes nothing.
    wgpy_quick(topo, ns, "up", conf)
    assert new_peer in topo.wg_dump(ns, ifname).peers
    wgpy_quick(topo, ns, "save", conf)
    assert conf.read_text() == saved
    wgpy_quick(topo, ns, "down", conf)


def test_save_keeps_comments_names_and_hooks(topo: Topology) -> None:
    """A server file with peer names, the remembered endpoint, comments and a hook with `&`:
    after a peer is added and one removed at runtime, `down` (SaveConfig) keeps every byte
    of what still runs, and the operator tools still find the peers by name afterwards."""
    ns, _ = one_side(topo)
    ifname = topo.ifname("c")
    private, _ = topo.genkey()
    alice, bob = topo.genkey()[1], topo.genkey()[1]
    log = topo.tmpdir / "hook.log"
    text = (
        "# office server, edited by hand\n"
        "\n"
        "[Interface]\n"
        f"PrivateKey = {private}\n"
        "ListenPort = 51820   # open in the firewall\n"
        "Address = 10.80.0.1/24\n"
        "# wgpy: Endpoint = 198.51.100.2:51820\n"
        f"PostUp = echo one >> {log} && echo two >> {log} & wait\n"
        "SaveConfig = true\n"
        "\n"
        "[Peer]\n"
        "# friendly_name = alice\n"
        f"PublicKey = {alice}\n"
        "AllowedIPs = 10.80.0.2/32\n"
        "\n"
        "[Peer]\n"
        "# friendly_name = bob\n"
        f"PublicKey = {bob}\n"
        "AllowedIPs = 10.80.0.3/32\n"
    )
    conf = write_conf(topo, ifname, text)
    wgpy_quick(topo, ns, "up", conf)
    _, carol = topo.genkey()
    topo.wg(ns, "set", ifname, "peer", carol, "allowed-ips", "10.80.0.4/32")
    topo.wg(ns, "set", ifname, "peer", bob, "remove")
    wgpy_quick(topo, ns, "down", conf)
    saved = conf.read_text()
    head, _, _ = text.partition("[Peer]\n# friendly_name = bob")
    assert saved == f"{head.rstrip()}\n\n[Peer]\nPublicKey = {carol}\nAllowedIPs = 10.80.0.4/32\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    # the names and the remembered endpoint still work for the operator tools
    wgpy_quick(topo, ns, "up", conf)
    env = quick_env("wireguard-go")
    added = ns.run([sys.executable, "-m", "wgpy.cli.ops", "add-peer", ifname,
                    "--name", "dave", "--config", str(conf)], env=env, check=False)
    assert added.returncode == 0, added.stderr
    assert "Endpoint = 198.51.100.2:51820\n" in added.stdout
    removed = ns.run([sys.executable, "-m", "wgpy.cli.ops", "remove-peer", ifname,
                      "alice", "--config", str(conf)], env=env, check=False)
    assert removed.returncode == 0, removed.stderr
    wgpy_quick(topo, ns, "down", conf)
    assert "# friendly_name = dave" in conf.read_text()
    assert alice not in conf.read_text()


def test_save_keeps_a_disabled_peer_disabled(topo: Topology) -> None:
    """disable-peer comments a peer out ('#disabled# '); `down` with SaveConfig keeps that
    block as it is (also when the peer was put back by hand with `wg set`), removes a peer
    gone at runtime without taking the block above it along, and enable-peer still works."""
    ns, _ = one_side(topo)
    ifname = topo.ifname("x")
    private, _ = topo.genkey()
    alice, bob = topo.genkey()[1], topo.genkey()[1]
    text = (
        f"[Interface]\nPrivateKey = {private}\nListenPort = 51821\nAddress = 10.80.0.1/24\n"
        "SaveConfig = true\n\n"
        f"[Peer]\n# friendly_name = bob\nPublicKey = {bob}\nAllowedIPs = 10.80.0.3/32\n"
        f"[Peer]\n# friendly_name = alice\nPublicKey = {alice}\nAllowedIPs = 10.80.0.2/32\n"
    )
    conf = write_conf(topo, ifname, text)
    wgpy_quick(topo, ns, "up", conf)
    env = quick_env("wireguard-go")
    ops = [sys.executable, "-m", "wgpy.cli.ops"]
    ns.run([*ops, "disable-peer", ifname, "bob", "--config", str(conf)], env=env)
    disabled = conf.read_text()
    assert "#disabled# AllowedIPs = 10.80.0.3/32\n[Peer]\n" in disabled  # right above alice
    topo.wg(ns, "set", ifname, "peer", bob, "allowed-ips", "10.80.0.3/32")  # by hand
    topo.wg(ns, "set", ifname, "peer", alice, "remove")
    wgpy_quick(topo, ns, "down", conf)
    assert conf.read_text() == disabled.partition("[Peer]\n# friendly_name = alice")[0]
    wgpy_quick(topo, ns, "up", conf)
    assert list(topo.wg_dump(ns, ifname).peers) == []
    ns.run([*ops, "enable-peer", ifname, "bob", "--config", str(conf)], env=env)
    assert list(topo.wg_dump(ns, ifname).peers) == [bob]
    wgpy_quick(topo, ns, "down", conf)
    assert f"\n[Peer]\n# friendly_name = bob\nPublicKey = {bob}\n" in conf.read_text()


def test_same_state_as_wg_quick(topo: Topology) -> None:
    """The real wg-quick and wgpy-quick, one after the other on the same file and namespace,
    leave identical rules, routes (all tables), nft rulesets, addresses and device config."""
    ns, _ = one_side(topo)
    ifname = topo.ifname("w")
    text = config(topo, interface="ListenPort = 51830\n",
                  address="Address = 10.80.0.2/24, fd80::2/64\n",
                  allowed="0.0.0.0/0, ::/0, 10.85.0.0/16, fd85::/48",
                  peer="PersistentKeepalive = 15\n")
    conf = write_conf(topo, ifname, text)
    states = []
    for tool in ("wg-quick", "wgpy-quick"):
        if tool == "wg-quick":
            topo.uapi_interfaces.append(ifname)
            topo.links.append((ns, ifname))
            ns.run(["wg-quick", "up", str(conf)], env=quick_env("wireguard-go"))
        else:
            wgpy_quick(topo, ns, "up", conf)
        state = snapshot(ns)
        addresses = ns.run(["ip", "-o", "address", "show", "dev", ifname]).stdout
        link = ns.run(["ip", "-o", "link", "show", "dev", ifname]).stdout
        device = topo.wg(ns, "showconf", ifname).stdout
        states.append((state, _without_fe80(addresses), link.split(":", 1)[1], device))
        if tool == "wg-quick":
            ns.run(["wg-quick", "down", str(conf)], env=quick_env("wireguard-go"))
        else:
            wgpy_quick(topo, ns, "down", conf)
    (wgq_state, *wgq_rest), (ours_state, *ours_rest) = states
    wgq_state = _without_fe80_nft(wgq_state)
    ours_state = _without_fe80_nft(ours_state)
    assert_restored(wgq_state, ours_state)
    assert wgq_rest == ours_rest


def _without_fe80(text: str) -> str:
    # Also drops `ip -o`'s leading "IFINDEX: " (the second run's link has a new index).
    return "\n".join(
        line.split(": ", 1)[-1] for line in text.splitlines() if "fe80::" not in line
    )


def _without_fe80_nft(state):  # type: ignore[no-untyped-def]
    # The TUN's random link-local address appears in the anti-spoofing rules of both tools.
    from dataclasses import replace

    return replace(state, nft=_without_fe80(state.nft))


def test_userspace_implementation_from_environment(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("i")
    conf = write_conf(topo, ifname, config(topo))
    result = wgpy_quick(topo, ns, "up", conf, extra_env={
        "WG_QUICK_USERSPACE_IMPLEMENTATION": IMPLEMENTATIONS["wgpy-daemon"]})
    assert "Falling back to slow userspace implementation" in result.stderr
    assert "-m wgpy.cli.daemon " + ifname in result.stderr
    wgpy_quick(topo, ns, "down", conf)
    # Unset (here: empty) means wgpy-daemon, found on PATH.
    shim_dir = topo.tmpdir / "daemon-bin"
    shim_dir.mkdir()
    shim = shim_dir / "wgpy-daemon"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m wgpy.cli.daemon "$@"\n')
    shim.chmod(0o755)
    result = wgpy_quick(topo, ns, "up", conf, extra_env={
        "WG_QUICK_USERSPACE_IMPLEMENTATION": "", "PATH": f"{shim_dir}:{os.environ['PATH']}"})
    assert f"[#] wgpy-daemon {ifname}" in result.stderr
    wgpy_quick(topo, ns, "down", conf)
    missing = wgpy_quick(topo, ns, "up", conf, check=False, extra_env={
        "WG_QUICK_USERSPACE_IMPLEMENTATION": "/nonexistent/wg-impl"})
    assert missing.returncode == 1
    assert "`/nonexistent/wg-impl' not found" in missing.stderr
    assert not ns.link_exists(ifname)


def test_sigterm_during_up_rolls_back(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("x")
    started = topo.tmpdir / "postup-started"
    conf = write_conf(topo, ifname, config(
        topo, allowed="0.0.0.0/0", interface=f"PostUp = touch {started}; sleep 20\n"))
    topo.uapi_interfaces.append(ifname)
    topo.links.append((ns, ifname))
    before_rules = ns.run(["ip", "rule"]).stdout
    process = ns.popen([sys.executable, "-m", "wgpy.cli.wg_quick", "up", str(conf)],
                       env=quick_env("wireguard-go"))
    topo.wait_for(started.exists, timeout=20, message="the PostUp hook to start")
    assert "lookup 51820" in ns.run(["ip", "rule"]).stdout
    # `ip netns exec` runs wgpy-quick as its child (exec'd, same PID).
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 1
    assert "interrupted" in topo.log_of(process)
    assert not ns.link_exists(ifname)
    assert ns.run(["ip", "rule"]).stdout == before_rules
    assert "wg-quick" not in ns.run(["nft", "list", "tables"]).stdout


def test_dns_servers_and_search_domains_saved(topo: Topology) -> None:
    ns, _ = one_side(topo)
    ifname = topo.ifname("n")
    resolver = namespace_resolver(topo, ns)
    try:
        text = config(
            topo, interface="DNS = 10.80.0.53, fd80::53, corp.example\nSaveConfig = true\n")
        conf = write_conf(topo, ifname, text)
        wgpy_quick(topo, ns, "up", conf, extra_env=resolver.env)
        assert resolv_conf_seen_in(ns) == (
            "nameserver 10.80.0.53\nnameserver fd80::53\nsearch corp.example\n")
        port = topo.wg(ns, "show", ifname, "listen-port").stdout.strip()
        wgpy_quick(topo, ns, "down", conf, extra_env=resolver.env)
        # what resolvconf held is what the file says; the port the device picked is pinned
        # (as wg-quick's save does), added after the section's last line
        assert conf.read_text() == text.replace(
            "SaveConfig = true\n", f"SaveConfig = true\nListenPort = {port}\n")
        assert resolv_conf_seen_in(ns) == resolver.original
        assert resolver.calls() == [f"-a {ifname} -m 0 -x", f"-l {ifname}", f"-d {ifname} -f"]
    finally:
        resolver.remove()


def test_iptables_fallback_without_nft(topo: Topology) -> None:
    """Without the nft tool, the anti-spoofing and connmark rules go in with iptables-restore
    (tagged with wg-quick's comment) and `down` deletes exactly those."""
    ns, _ = one_side(topo)
    bin_dir = topo.tmpdir / "no-nft-bin"
    bin_dir.mkdir()
    for tool in ("ip", "bash", "wireguard-go", "iptables-restore", "ip6tables-restore",
                 "iptables-save", "ip6tables-save"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    env = {"PATH": str(bin_dir)}
    ifname = topo.ifname("p")
    conf = write_conf(topo, ifname, config(topo, allowed="0.0.0.0/0, ::/0",
                                           address="Address = 10.80.0.2/32, fd80::2/128\n"))
    before4 = _iptables_rules(ns, "iptables")
    wgpy_quick(topo, ns, "up", conf, extra_env=env)
    rules4 = _iptables_rules(ns, "iptables")
    rules6 = _iptables_rules(ns, "ip6tables")
    comment = f'-m comment --comment "wg-quick(8) rule for {ifname}"'
    assert f"-A PREROUTING -d 10.80.0.2/32 ! -i {ifname} -m addrtype ! --src-type LOCAL {comment} -j DROP" in rules4
    assert "--mark 0xca6c" in rules4 and "CONNMARK --restore-mark" in rules4
    assert f"-d fd80::2/128 ! -i {ifname}" in rules6
    assert f"wg-quick-{ifname}" not in ns.run(["nft", "list", "tables"]).stdout
    wgpy_quick(topo, ns, "down", conf, extra_env=env)
    assert _iptables_rules(ns, "iptables") == before4
    assert comment not in _iptables_rules(ns, "ip6tables")


def _iptables_rules(ns: Netns, iptables: str) -> str:
    saved = ns.run([f"{iptables}-save"]).stdout
    return "\n".join(line for line in saved.splitlines() if line.startswith("-A "))


def test_full_tunnel_over_an_ipv6_endpoint(topo: Topology) -> None:
    """::/0 into the tunnel while the endpoint itself is IPv6: the IPv6 policy rules must keep
    the encrypted packets on the uplink."""
    local, remote = one_side(topo)
    no_dad(remote)
    local.run(["ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"])
    client_private, client_public = topo.genkey()
    server_private, server_public = topo.genkey()
    client_if, server_if = topo.ifname("c"), topo.ifname("s")
    server_conf = write_conf(topo, server_if, (
        f"[Interface]\nPrivateKey = {server_private}\nListenPort = 51820\n"
        f"Address = 10.80.0.1/24, fd80::1/64\n\n[Peer]\nPublicKey = {client_public}\n"
        "AllowedIPs = 10.80.0.2/32, fd80::2/128\n"))
    client_conf = write_conf(topo, client_if, (
        f"[Interface]\nPrivateKey = {client_private}\nAddress = 10.80.0.2/32, fd80::2/128\n\n"
        f"[Peer]\nPublicKey = {server_public}\nAllowedIPs = 0.0.0.0/0, ::/0\n"
        "Endpoint = [2001:db8:1::1]:51820\n"))
    before = snapshot(local)
    wgpy_quick(topo, remote, "up", server_conf)
    wgpy_quick(topo, local, "up", client_conf)
    # Somewhere on the IPv6 internet: into the tunnel, unless marked as the tunnel's own.
    far = "2001:db8:99::1"
    assert f"dev {client_if}" in local.run(["ip", "-6", "route", "get", far]).stdout
    marked = local.run(["ip", "-6", "route", "get", far, "mark", "51820"]).stdout
    assert "via 2001:db8:1::1" in marked and f"dev {client_if}" not in marked
    local.ping("fd80::1")
    local.ping("10.80.0.1")
    assert topo.wg_dump(remote, server_if).peers[client_public].endpoint.startswith(
        "[2001:db8:1::2]:")
    wgpy_quick(topo, local, "down", client_conf)
    wgpy_quick(topo, remote, "down", server_conf)
    assert_restored(before, snapshot(local))
