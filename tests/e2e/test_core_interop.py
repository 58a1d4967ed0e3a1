"""The sans-IO core against wireguard-go over a real UDP socket: wire compatibility first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CORE_PEER = str(Path(__file__).resolve().parents[1] / "support" / "core_peer.py")


def _setup(topo):
    srv = topo.netns("srv")
    cli = topo.netns("cli")
    topo.veth(srv, cli, ["10.200.0.1/24"], ["10.200.0.2/24"])
    ifname = topo.ifname("g")
    topo.start_wireguard_go(srv, ifname)
    srv_private, srv_public = topo.genkey()
    cli_private, cli_public = topo.genkey()
    key_file = topo.write_file(srv_private + "\n", name="private")
    return srv, cli, ifname, key_file, srv_public, cli_private, cli_public


@pytest.mark.parametrize("psk", [False, True])
def test_core_initiates_to_wireguard_go(topo, psk):
    srv, cli, ifname, key_file, srv_public, cli_private, cli_public = _setup(topo)
    args = ["set", ifname, "listen-port", "51820", "private-key", str(key_file),
            "peer", cli_public, "allowed-ips", "10.77.0.2/32"]
    extra = []
    if psk:
        psk_value = topo.genpsk()
        args += ["preshared-key", str(topo.write_file(psk_value + "\n", name="psk"))]
        extra = [psk_value]
    topo.wg(srv, *args)
    srv.run(["ip", "addr", "add", "10.77.0.1/24", "dev", ifname])
    srv.run(["ip", "link", "set", ifname, "up"])
    result = cli.run([sys.executable, CORE_PEER, cli_private, srv_public, "40000",
                      "10.200.0.1", "51820", "ping", *extra], check=False, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    dump = topo.wg_dump(srv, ifname)
    assert dump.peers[cli_public].latest_handshake > 0
    assert dump.peers[cli_public].endpoint == "10.200.0.2:40000"


def test_wireguard_go_initiates_to_core(topo):
    srv, cli, ifname, key_file, srv_public, cli_private, cli_public = _setup(topo)
    topo.wg(srv, "set", ifname, "listen-port", "51820", "private-key", str(key_file),
            "peer", cli_public, "allowed-ips", "10.77.0.2/32", "endpoint", "10.200.0.2:40000")
    srv.run(["ip", "addr", "add", "10.77.0.1/24", "dev", ifname])
    srv.run(["ip", "link", "set", ifname, "up"])
    answerer = cli.popen([sys.executable, CORE_PEER, cli_private, srv_public, "40000",
                          "10.200.0.1", "51820", "answer"])
    ping = srv.run(["ping", "-c", "3", "-i", "0.3", "-W", "5", "10.77.0.2"], check=False,
                   timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert topo.wg_dump(srv, ifname).peers[cli_public].latest_handshake > 0
    answerer.kill()
