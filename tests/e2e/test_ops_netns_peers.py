"""Peers by name through the real `wgpy` entry point: `peers`, `show --names`, and
`disable-peer` / `enable-peer` against a running wireguard-go server whose phone client is up
with the real wg-quick; the disabled config brought up by the real wg-quick and by wgpy-quick
in other namespaces.

    cli (192.0.2.2, wg-quick) --veth-- srv (192.0.2.1, UDP 51820; tunnel 10.9.0.1/24, fd09::1/64)
"""

from __future__ import annotations

import json
import time

from netns import Topology
from opslib import ops, start_server
from quicklib import no_dad, wgpy_quick

from wgpy import keys
from wgpy.conf import parse_config
from wgpy.conf.disabled import enable_line

NETNS_PREFIX = "wgo"
USERSPACE = {
    "WG_QUICK_USERSPACE_IMPLEMENTATION": "wireguard-go",
    "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1",
}


def server_text(laptop: str) -> str:
    private, _ = Topology.genkey()
    return (
        "# office VPN -- hand-written, keep\n"
        "[Interface]\n"
        f"PrivateKey = {private}\n"
        "ListenPort = 51820\n"
        "Address = 10.9.0.1/24, fd09::1/64\n"
        "\n"
        "[Peer]\n"
        "# friendly_name = laptop\n"
        f"PublicKey = {laptop}\n"
        "AllowedIPs = 10.9.0.9/32  # fixed address\n"
        "\n"
        "# peers below are added by wgpy add-peer\n"
    )


def test_peers_show_names_disable_enable(topo: Topology) -> None:
    server, client = topo.netns("srv"), topo.netns("cli")
    no_dad(server)
    no_dad(client)
    topo.veth(server, client, ["192.0.2.1/24"], ["192.0.2.2/24"])
    ifname = topo.ifname("s")
    laptop = topo.genkey()[1]
    config = start_server(topo, server, "wireguard-go", ifname, server_text(laptop))
    client_if = topo.ifname("c")
    client_conf = topo.tmpdir / "conf" / f"{client_if}.conf"
    added = ops(server, "add-peer", ifname, "--name", "phone", "--config", config,
                "--endpoint", "192.0.2.1:51820", "--out", client_conf)
    assert added.returncode == 0, added.stderr
    private = parse_config(client_conf.read_text()).interface.private_key
    assert private is not None
    phone = keys.key_to_base64(keys.public_key(private))
    topo.track_interface(client, client_if)
    client.run(["wg-quick", "up", str(client_conf)], env=USERSPACE, timeout=60)
    client.ping("10.9.0.1")
    time.sleep(1.1)  # the handshake is now at least a second old: "N second(s) ago"

    # -- peers: one line per peer, live and from the config
    listed = ops(server, "peers", ifname, "--config", config)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "ADDRESSES"] and header.endswith("STATE")
    assert len(rows) == 2 and rows[0].startswith("phone ") and rows[1].startswith("laptop ")
    assert "10.9.0.2/32, fd09::2/128" in rows[0] and "192.0.2.2:" in rows[0]
    assert " ago " in rows[0] and " received, " in rows[0] and rows[0].endswith("  enabled")
    assert "10.9.0.9/32" in rows[1] and "  never  " in rows[1]
    assert rows[1].endswith("  enabled")  # running, and in the config
    document = json.loads(ops(server, "peers", ifname, "--config", config, "--json").stdout)
    by_name = {peer["name"]: peer for peer in document["peers"]}
    assert by_name["phone"]["public_key"] == phone and by_name["phone"]["enabled"] is True
    assert by_name["phone"]["running"] is True and by_name["phone"]["rx_bytes"] > 0
    assert by_name["laptop"]["latest_handshake_ago"] == "never"

    # -- show --names: the name beside the key; without it, no name anywhere
    named = ops(server, "show", ifname, "--names", "--config-dir", config.parent)
    assert named.returncode == 0, named.stderr
    assert f"peer: {phone} (phone)\n" in named.stdout
    assert f"peer: {laptop} (laptop)\n" in named.stdout
    plain = ops(server, "show", ifname)
    assert f"peer: {phone}\n" in plain.stdout and "(phone)" not in plain.stdout
    shown = json.loads(ops(server, "show", ifname, "--json", "--config-dir",
                           config.parent).stdout)
    assert {p["public_key"]: p["name"] for p in shown["interfaces"][0]["peers"]} == {
        phone: "phone", laptop: "laptop"}

    # -- disable: off the interface, still in the config (commented out), nothing else moves
    before = config.read_text()
    disabled = ops(server, "disable-peer", ifname, "phone", "--config", config)
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stderr == "disabled peer 'phone' in the config and the running interface\n"
    assert topo.wg(server, "show", ifname, "peers").stdout.split() == [laptop]
    after = config.read_text()
    assert f"#disabled# PublicKey = {phone}\n" in after
    assert "".join(enable_line(line) + "\n" for line in after.splitlines()) == before
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
               if a != b]
    assert changed and all(b == "#disabled# " + a for a, b in changed), changed
    cut_off = client.run(["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "10.9.0.1"],
                         check=False)
    assert cut_off.returncode != 0, cut_off.stdout
    listed = ops(server, "peers", ifname, "--config", config).stdout.splitlines()
    assert listed[2].startswith("phone ") and listed[2].endswith("  disabled"), listed

    # wg-quick strip, the real wg-quick up and wgpy-quick up all leave it out
    stripped = server.run(["wg-quick", "strip", str(config)]).stdout
    assert [keys.key_to_base64(peer.public_key)
            for peer in parse_config(stripped, quick=False).peers] == [laptop]
    # syncconf of the stripped file takes off a disabled peer someone put back by hand
    topo.wg(server, "set", ifname, "peer", phone, "allowed-ips", "10.9.0.2/32")
    synced = ops(server, "syncconf", ifname, topo.write_file(stripped, name="stripped.conf"))
    assert synced.returncode == 0, synced.stderr
    assert topo.wg(server, "show", ifname, "peers").stdout.split() == [laptop]
    # (UAPI sockets share one directory across namespaces: each up gets the file under its
    # own interface name, byte for byte)
    for tool in ("wg-quick", "wgpy-quick"):
        ns, copy_if = topo.netns(tool[:4]), topo.ifname("q")
        copy = config.with_name(f"{copy_if}.conf")
        copy.write_bytes(config.read_bytes())
        copy.chmod(0o600)
        if tool == "wg-quick":
            topo.track_interface(ns, copy_if)
            ns.run(["wg-quick", "up", str(copy)], env=USERSPACE, timeout=60)
        else:
            wgpy_quick(topo, ns, "up", copy)
        assert topo.wg(ns, "show", copy_if, "peers").stdout.split() == [laptop], tool
        if tool == "wg-quick":
            ns.run(["wg-quick", "down", str(copy)], env=USERSPACE, timeout=60)
        else:
            wgpy_quick(topo, ns, "down", copy)
    assert config.read_text() == after

    # -- enable: back live and in the config, byte for byte; the phone gets through again
    enabled = ops(server, "enable-peer", ifname, "phone", "--config", config)
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stderr == "enabled peer 'phone' in the config and the running interface\n"
    assert config.read_text() == before
    dump = topo.wg_dump(server, ifname)
    assert sorted(dump.peers) == sorted([phone, laptop])
    assert dump.peers[phone].allowed_ips == ["10.9.0.2/32", "fd09::2/128"]
    assert dump.peers[phone].preshared_key is not None
    # The server forgot the phone's session when it was removed; the phone finds out as wg
    # does: no answer to its data for KEEPALIVE + REKEY_TIMEOUT (15 s), then a new handshake.
    topo.wait_for(lambda: client.run(["ping", "-n", "-q", "-c", "1", "-W", "1", "10.9.0.1"],
                                     check=False).returncode == 0,
                  timeout=45, interval=0.5, message="a ping over the re-enabled peer")
    client.ping("10.9.0.1")

    again = ops(server, "enable-peer", ifname, "phone", "--config", config)
    assert again.returncode == 0 and again.stderr == "peer 'phone' was already enabled\n"
    unknown = ops(server, "disable-peer", ifname, "tablet", "--config", config)
    assert unknown.returncode == 1 and "no peer 'tablet' in " in unknown.stderr
    assert config.read_text() == before
