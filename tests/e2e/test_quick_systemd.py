"""The shipped wgpy-quick@.service: its ExecStart / ExecReload / ExecStop lines, run as systemd
would (bash, %i = the interface) inside a namespace. `wgpy-quick` on PATH is a shim that maps
the interface name to the test's config file instead of /etc/wireguard."""

from __future__ import annotations

import importlib.resources
import shlex
import sys
from pathlib import Path

from netns import Topology
from quicklib import quick_env, write_conf

NETNS_PREFIX = "wgq"


def unit_commands() -> dict[str, str]:
    text = importlib.resources.files("wgpy").joinpath("data/wgpy-quick@.service").read_text()
    commands = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStart", "ExecStop", "ExecReload"):
            commands[key] = value
    return commands


def shims(topo: Topology, conf_dir: Path) -> Path:
    bin_dir = topo.tmpdir / "unit-bin"
    bin_dir.mkdir()
    (bin_dir / "wgpy-quick").write_text(
        f'#!/bin/bash\nexec {sys.executable} -m wgpy.cli.wg_quick "$1" "{conf_dir}/$2.conf"\n')
    (bin_dir / "wgpy").write_text(f'#!/bin/bash\nexec {sys.executable} -m wgpy.cli.wg "$@"\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    return bin_dir


def run_unit_command(topo, ns, command: str, ifname: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    argv = shlex.split(command.replace("%i", ifname))
    return ns.run(argv, env=env)


def test_unit_start_reload_stop(topo: Topology) -> None:
    commands = unit_commands()
    local, remote = topo.netns("local"), topo.netns("remote")
    topo.veth(local, remote, ["198.51.100.2/24"], ["198.51.100.1/24"])
    ifname = topo.ifname("s")
    private, _ = topo.genkey()
    _, first_peer = topo.genkey()
    _, second_peer = topo.genkey()
    header = f"[Interface]\nPrivateKey = {private}\nAddress = 10.86.0.1/24\nListenPort = 51820\n"
    conf = write_conf(topo, ifname, header + (
        f"\n[Peer]\nPublicKey = {first_peer}\nAllowedIPs = 10.86.0.2/32\n"))
    bin_dir = shims(topo, conf.parent)
    env = quick_env("wireguard-go", {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
    topo.uapi_interfaces.append(ifname)
    topo.links.append((local, ifname))

    run_unit_command(topo, local, commands["ExecStart"], ifname, env)
    index_before = local.run(["ip", "-o", "link", "show", ifname]).stdout.split(":")[0]
    assert set(topo.wg_dump(local, ifname).peers) == {first_peer}

    # Edit the file (peer replaced, port changed) and reload: the device follows, the link
    # (and its address) stays.
    conf.write_text(header.replace("51820", "51821") + (
        f"\n[Peer]\nPublicKey = {second_peer}\nAllowedIPs = 10.86.0.3/32\n"))
    run_unit_command(topo, local, commands["ExecReload"], ifname, env)
    dump = topo.wg_dump(local, ifname)
    assert set(dump.peers) == {second_peer}
    assert dump.peers[second_peer].allowed_ips == ["10.86.0.3/32"]
    assert dump.listen_port == 51821
    assert local.run(["ip", "-o", "link", "show", ifname]).stdout.split(":")[0] == index_before
    assert "10.86.0.1/24" in local.run(["ip", "-o", "address", "show", ifname]).stdout

    run_unit_command(topo, local, commands["ExecStop"], ifname, env)
    assert not local.link_exists(ifname)
