"""add-peer against a running server, the client config brought up with wg-quick (or
wgpy-quick), a ping through, check-handshakes and the exporter on the live tunnel, then
remove-peer cutting the client off.

    client (192.0.2.2) --veth-- server (192.0.2.1, UDP 51820; tunnel 10.9.0.1/24, fd09::1/64)
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
from netns import Netns, Topology
from opslib import AS_NOBODY, nobody_env, ops, start_server, write_conf
from prometheus_client.parser import text_string_to_metric_families
from quicklib import no_dad, wgpy_quick

from wgpy import keys
from wgpy.conf import parse_config

NETNS_PREFIX = "wgo"
USERSPACE = {
    "WG_QUICK_USERSPACE_IMPLEMENTATION": "wireguard-go",
    "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1",
}


def server_text() -> str:
    private, _ = Topology.genkey()
    return (
        "# test server\n"
        "[Interface]\n"
        f"PrivateKey = {private}\n"
        "ListenPort = 51820\n"
        "Address = 10.9.0.1/24, fd09::1/64\n"
    )


@pytest.mark.parametrize(
    ("server_impl", "client_tool"),
    [("wireguard-go", "wg-quick"), ("wgpy-daemon", "wg-quick"), ("wireguard-go", "wgpy-quick")],
)
def test_add_peer_ping_remove(topo: Topology, server_impl: str, client_tool: str) -> None:
    server, client = topo.netns("srv"), topo.netns("cli")
    no_dad(server)
    no_dad(client)
    topo.veth(server, client, ["192.0.2.1/24"], ["192.0.2.2/24"])
    ifname = topo.ifname("s")
    config = start_server(topo, server, server_impl, ifname, server_text())

    client_if = topo.ifname("c")
    client_conf = topo.tmpdir / "conf" / f"{client_if}.conf"
    png = topo.tmpdir / "phone.png"
    added = ops(server, "add-peer", ifname, "--name", "phone", "--config", config,
                "--endpoint", "192.0.2.1:51820", "--out", client_conf, "--qr-png", png)
    assert added.returncode == 0, added.stderr
    assert "added peer 'phone' (10.9.0.2/32, fd09::2/128" in added.stderr
    assert "to the running interface and the config" in added.stderr
    for path in (config, client_conf, png):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path

    client_text = client_conf.read_text()
    assert "DNS" not in client_text  # no resolvconf in this test
    client_private = parse_config(client_text).interface.private_key
    assert client_private is not None
    client_public = keys.key_to_base64(keys.public_key(client_private))
    dump = topo.wg_dump(server, ifname)
    assert list(dump.peers) == [client_public]
    assert dump.peers[client_public].allowed_ips == ["10.9.0.2/32", "fd09::2/128"]
    assert dump.peers[client_public].preshared_key is not None
    assert "# friendly_name = phone" in config.read_text()

    if client_tool == "wg-quick":
        topo.track_interface(client, client_if)
        client.run(["wg-quick", "up", str(client_conf)], env=USERSPACE, timeout=60)
    else:
        wgpy_quick(topo, client, "up", client_conf, implementation="wireguard-go")
    client.ping("10.9.0.1")
    client.ping("fd09::1")
    assert topo.wg_dump(server, ifname).peers[client_public].latest_handshake > 0

    fresh = ops(server, "check-handshakes", ifname, "--config", config, "--max-age", "120")
    assert fresh.returncode == 0 and fresh.stdout == "", fresh.stdout + fresh.stderr
    time.sleep(1.1)  # the handshake is now older than one second
    stale = ops(server, "check-handshakes", ifname, "--config", config, "--max-age", "0")
    assert stale.returncode == 1
    assert stale.stdout.startswith(f"phone ({client_public}): latest handshake "), stale.stdout

    metrics = scrape_exporter(topo, server, ifname, config)
    labels = {"interface": ifname, "public_key": client_public,
              "allowed_ips": "10.9.0.2/32,fd09::2/128", "friendly_name": "phone"}
    values = {sample.name: sample.value
              for family in text_string_to_metric_families(metrics)
              for sample in family.samples if sample.labels == labels}
    assert set(values) == {"wireguard_sent_bytes_total", "wireguard_received_bytes_total",
                           "wireguard_latest_handshake_seconds"}, metrics
    assert values["wireguard_received_bytes_total"] > 0
    assert values["wireguard_sent_bytes_total"] > 0
    assert abs(values["wireguard_latest_handshake_seconds"] - time.time()) < 120

    removed = ops(server, "remove-peer", ifname, "phone", "--config", config)
    assert removed.returncode == 0, removed.stderr
    assert "removed peer 'phone' from the running interface and the config" in removed.stderr
    assert topo.wg_dump(server, ifname).peers == {}
    assert "[Peer]" not in config.read_text()
    cut_off = client.run(["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "10.9.0.1"],
                         check=False)
    assert cut_off.returncode != 0, cut_off.stdout


FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def scrape_exporter(topo: Topology, ns: Netns, ifname: str, config: Path) -> str:
    """Run `exporter` on the namespace's loopback and fetch /metrics once."""
    port = 9586
    ns.popen([sys.executable, "-m", "wgpy.cli.wg", "exporter", "--listen",
              f"127.0.0.1:{port}", "--interface", ifname, "--config-dir", str(config.parent)])
    body = ""

    def scraped() -> bool:
        nonlocal body
        result = ns.run([sys.executable, "-c", FETCH, f"http://127.0.0.1:{port}/metrics"],
                        check=False)
        body = result.stdout
        return result.returncode == 0

    topo.wait_for(scraped, timeout=15, interval=0.2, message="the exporter's /metrics")
    return body


def test_refusals_change_nothing(topo: Topology) -> None:
    server = topo.netns("srv")
    ifname = topo.ifname("s")
    text = server_text().replace("10.9.0.1/24", "10.9.0.1/30") + (
        "\n[Peer]\n# friendly_name = taken\n"
        f"PublicKey = {Topology.genkey()[1]}\nAllowedIPs = 10.9.0.2/32\n")
    config = start_server(topo, server, "wireguard-go", ifname, text)
    before = topo.wg(server, "showconf", ifname).stdout

    duplicate = ops(server, "add-peer", ifname, "--name", "TAKEN", "--config", config,
                    "--endpoint", "192.0.2.1:51820")
    assert duplicate.returncode == 1 and "already in" in duplicate.stderr
    full = ops(server, "add-peer", ifname, "--name", "new", "--config", config,
               "--endpoint", "192.0.2.1:51820")
    assert full.returncode == 1 and "10.9.0.0/30 is full" in full.stderr
    broken = write_conf(topo, "broken", text + "AllowedIPs = 10.9.0.300/32\n")
    unparsable = ops(server, "add-peer", ifname, "--name", "new", "--config", broken,
                     "--endpoint", "192.0.2.1:51820", "--address", "10.9.9.9/32")
    assert unparsable.returncode == 1 and "broken.conf:11: AllowedIPs" in unparsable.stderr
    assert config.read_text() == text
    assert topo.wg(server, "showconf", ifname).stdout == before


def test_hostile_inputs_are_refused_and_change_nothing(topo: Topology) -> None:
    """Each refusal names what is wrong and leaves the config, the running interface and the
    output file as they were: a newline smuggled into --endpoint (it wrote a PostUp line into
    both configs), a host that is not one, a DNS entry that is not an address, an address
    outside the interface's subnets."""
    server = topo.netns("srv")
    ifname = topo.ifname("s")
    config = start_server(topo, server, "wgpy-daemon", ifname, server_text())
    before_conf = config.read_bytes()
    before_live = topo.wg(server, "showconf", ifname).stdout
    out = topo.tmpdir / "client.conf"
    cases = [
        (["--endpoint", "192.0.2.1:51820\nPostUp = touch /tmp/owned"], "--endpoint: endpoint: "),
        (["--endpoint", "not a host"], "not a host name or IP address: 'not a host'"),
        (["--endpoint", "192.0.2.1:51820", "--dns", "corp.example"],
         "--dns: not an IP address: 'corp.example'"),
        (["--endpoint", "192.0.2.1:51820", "--address", "10.99.0.5"],
         "outside the interface's subnets (10.9.0.0/24, fd09::/64)"),
        (["--endpoint", "192.0.2.1:51820", "--name", "two\nlines"], "--name: "),
    ]
    for extra, message in cases:
        args = ["add-peer", ifname, "--name", "phone", "--config", config, "--out", out, *extra]
        refused = ops(server, *args)
        assert refused.returncode == 1 and message in refused.stderr, (extra, refused.stderr)
        assert "Traceback" not in refused.stderr
        assert config.read_bytes() == before_conf
        assert topo.wg(server, "showconf", ifname).stdout == before_live
        assert not out.exists()


def test_address_outside_the_subnets_gets_its_route(topo: Topology) -> None:
    """--allow-outside-subnet: the peer is added and its address routed to the interface,
    as wg-quick up routes every AllowedIPs."""
    server = topo.netns("srv")
    ifname = topo.ifname("s")
    config = start_server(topo, server, "wireguard-go", ifname, server_text())
    added = ops(server, "add-peer", ifname, "--name", "lab", "--config", config,
                "--endpoint", "192.0.2.1:51820", "--address", "10.99.0.5",
                "--allow-outside-subnet")
    assert added.returncode == 0, added.stderr
    routes = server.run(["ip", "-4", "route", "show", "dev", ifname]).stdout
    assert "10.99.0.5 " in routes, routes
    assert "AllowedIPs = 10.99.0.5/32" in config.read_text()


def test_output_files_never_follow_symlinks_nor_reuse_foreign_files(topo: Topology) -> None:
    server = topo.netns("srv")
    ifname = topo.ifname("s")
    config = start_server(topo, server, "wireguard-go", ifname, server_text())
    outputs = topo.tmpdir / "outputs"
    outputs.mkdir(mode=0o755)
    target = topo.tmpdir / "precious"
    target.write_text("keep me\n")
    out = outputs / "client.conf"
    out.symlink_to(target)
    png = outputs / "client.png"
    png.write_bytes(b"")
    png.chmod(0o666)
    os.chown(png, 65534, 65534)  # planted by another user, who would keep a handle to read
    added = ops(server, "add-peer", ifname, "--name", "phone", "--config", config,
                "--endpoint", "192.0.2.1:51820", "--out", out, "--qr-png", png)
    assert added.returncode == 0, added.stderr
    assert target.read_text() == "keep me\n"
    assert not out.is_symlink() and "PrivateKey" in out.read_text()
    for path in (out, png):
        info = path.lstat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600), path
    assert png.read_bytes().startswith(b"\x89PNG")
    qr_png = outputs / "again.png"
    qr_png.symlink_to(target)
    shown = ops(server, "qr", out, "--png", qr_png)
    assert shown.returncode == 0, shown.stderr
    assert target.read_text() == "keep me\n" and not qr_png.is_symlink()


def test_non_root_is_told_it_needs_root(topo: Topology) -> None:
    server = topo.netns("srv")
    ifname = topo.ifname("s")
    config = start_server(topo, server, "wireguard-go", ifname, server_text())
    before = config.read_bytes()
    env = nobody_env(topo)
    for args in (["add-peer", ifname, "--name", "phone", "--config", str(config),
                  "--endpoint", "192.0.2.1:51820"],
                 ["remove-peer", ifname, "phone", "--config", str(config)],
                 ["qr", str(config)]):
        result = server.run([*AS_NOBODY, sys.executable, "-m", "wgpy.cli.ops", *args],
                            check=False, env=env)
        assert result.returncode == 1, (args, result)
        assert "needs root" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
    assert config.read_bytes() == before
