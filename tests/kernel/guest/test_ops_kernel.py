"""The operator tools on a kernel WireGuard server: add-peer live (a real wg-quick client on a
kernel link connects), check-handshakes, show --json, the exporter's metrics, remove-peer
cutting the client off, and doctor's checks (the userspace suite's table of breakages,
tests/e2e/test_ops_netns_doctor.py, applied to a kernel server).

The tools run in this process inside the server's namespace (kernlib.run_in_process).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kernlib import add_kernel_link, run_in_process, run_wgpy_in_process
from netns import Netns, Topology
from opslib import write_conf
from prometheus_client.parser import text_string_to_metric_families
from quicklib import no_dad
from test_ops_netns_doctor import CASES, Case, Server, check_case

from wgpy import keys
from wgpy.conf import parse_config, strip_config


def ops(ns: Netns, *args: str | Path) -> object:
    from wgpy.cli.ops import main

    return run_in_process(lambda: main([str(a) for a in args]), ns.name, {})


def start_kernel_server(topo: Topology, ns: Netns, text: str) -> tuple[str, Path]:
    ifname = add_kernel_link(topo, ns, "s")
    path = write_conf(topo, ifname, text)
    topo.wg(ns, "setconf", ifname, str(topo.write_file(strip_config(text), name="stripped")))
    topo.add_addresses(ns, ifname, [str(a) for a in parse_config(text).interface.addresses])
    ns.run(["ip", "link", "set", ifname, "mtu", "1420", "up"])
    return ifname, path


def test_add_peer_live_then_remove(mtopo: Topology) -> None:
    server, client = mtopo.netns("srv"), mtopo.netns("cli")
    no_dad(server)
    no_dad(client)
    mtopo.veth(server, client, ["192.0.2.1/24"], ["192.0.2.2/24"])
    text = (f"[Interface]\nPrivateKey = {mtopo.genkey()[0]}\nListenPort = 51820\n"
            "Address = 10.9.0.1/24, fd09::1/64\n")
    ifname, config = start_kernel_server(mtopo, server, text)

    client_if = mtopo.ifname("c")
    client_conf = mtopo.tmpdir / "conf" / f"{client_if}.conf"
    added = ops(server, "add-peer", ifname, "--name", "phone", "--config", config,
                "--endpoint", "192.0.2.1:51820", "--out", client_conf)
    assert added.returncode == 0, added.text()
    assert b"to the running interface and the config" in added.stderr
    client_private = parse_config(client_conf.read_text()).interface.private_key
    assert client_private is not None
    client_public = keys.key_to_base64(keys.public_key(client_private))
    dump = mtopo.wg_dump(server, ifname)
    assert list(dump.peers) == [client_public]
    assert dump.peers[client_public].allowed_ips == ["10.9.0.2/32", "fd09::2/128"]
    assert dump.peers[client_public].preshared_key is not None

    mtopo.links.append((client, client_if))
    client.run(["wg-quick", "up", str(client_conf)], timeout=60)
    assert " wireguard " in client.run(["ip", "-d", "link", "show", client_if]).stdout
    client.ping("10.9.0.1", timeout=30)
    client.ping("fd09::1", timeout=30)

    fresh = ops(server, "check-handshakes", ifname, "--config", config, "--max-age", "120")
    assert fresh.returncode == 0 and fresh.stdout == b"", fresh.text()
    time.sleep(1.1)
    stale = ops(server, "check-handshakes", ifname, "--config", config, "--max-age", "0")
    assert stale.returncode == 1
    assert stale.stdout.startswith(f"phone ({client_public}): latest handshake ".encode())

    shown = run_wgpy_in_process(["show", ifname, "--json"], server.name, {})
    assert shown.returncode == 0, shown.text()
    (interface,) = json.loads(shown.stdout)["interfaces"]
    (peer,) = interface["peers"]
    assert interface["listen_port"] == 51820 and peer["public_key"] == client_public
    assert peer["latest_handshake"] > 0 and peer["rx_bytes"] > 0, peer

    metrics = scrape(server, ifname, config.parent)
    labels = {"interface": ifname, "public_key": client_public,
              "allowed_ips": "10.9.0.2/32,fd09::2/128", "friendly_name": "phone"}
    values = {sample.name: sample.value
              for family in text_string_to_metric_families(metrics)
              for sample in family.samples if sample.labels == labels}
    assert values["wireguard_received_bytes_total"] > 0, metrics
    assert values["wireguard_sent_bytes_total"] > 0
    assert abs(values["wireguard_latest_handshake_seconds"] - time.time()) < 120

    removed = ops(server, "remove-peer", ifname, "phone", "--config", config)
    assert removed.returncode == 0, removed.text()
    assert mtopo.wg_dump(server, ifname).peers == {}
    assert "[Peer]" not in config.read_text()
    cut_off = client.run(["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "10.9.0.1"],
                         check=False)
    assert cut_off.returncode != 0, cut_off.stdout
    client.run(["wg-quick", "down", str(client_conf)], timeout=60)


def scrape(ns: Netns, ifname: str, config_dir: Path) -> str:
    """The exporter's /metrics body for ifname (its collector, in ns, without HTTP)."""
    from prometheus_client import generate_latest

    from wgpy.control.client import DeviceControl
    from wgpy.ops import exporter

    body: list[bytes] = []

    def collect() -> int:
        collector = exporter.WireGuardCollector(DeviceControl, [ifname], config_dir)
        body.append(generate_latest(exporter.make_registry(collector)))
        return 0

    result = run_in_process(collect, ns.name, {})
    assert result.returncode == 0, result.text()
    return body[0].decode()


def build_kernel_server(topo: Topology) -> Server:
    """tests/e2e/test_ops_netns_doctor.py's healthy server, on a kernel link."""
    server, upstream = topo.netns("dsrv"), topo.netns("dup")
    uplink, _ = topo.veth(server, upstream, ["192.0.2.1/24"], ["192.0.2.254/24"])
    server.run(["ip", "route", "add", "default", "via", "192.0.2.254"])
    private, _ = topo.genkey()
    text = ("[Interface]\n"
            f"PrivateKey = {private}\nListenPort = 51820\nAddress = 10.9.0.1/24\nMTU = 1420\n"
            "\n[Peer]\n# friendly_name = phone\n"
            f"PublicKey = {topo.genkey()[1]}\nPresharedKey = {topo.genpsk()}\n"
            "AllowedIPs = 10.9.0.2/32\n")
    ifname, config = start_kernel_server(topo, server, text)
    return Server(topo, server, ifname, config, private, uplink)


def doctor(server: Server) -> tuple[int, list[dict[str, str]]]:
    result = ops(server.ns, "doctor", server.ifname, "--config", server.config, "--json")
    document = json.loads(result.stdout)
    assert document["ok"] == (result.returncode == 0), result.text()
    return result.returncode, [f for r in document["reports"] for f in r["findings"]]


@pytest.mark.parametrize("case", CASES, ids=[c.check for c in CASES])
def test_doctor_finds_on_a_kernel_server(mtopo: Topology, case: Case) -> None:
    check_case(build_kernel_server(mtopo), case, doctor)
