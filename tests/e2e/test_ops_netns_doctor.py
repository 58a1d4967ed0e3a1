"""`wgpy doctor` in a namespace against deliberately broken setups, one per check: each breaks
one thing of a healthy wireguard-go server (its config file, its live peers, the namespace's
routes, sysctls or nftables) and asserts doctor reports that check with the right status and
fix. The healthy baseline has no failure.

    up (192.0.2.254) --veth-- srv (192.0.2.1/24, default via .254; wg 10.9.0.1/24, UDP 51820)

`stale-handshake` needs a handshake older than 180 s, too slow for this suite: it is covered by
tests/unit/ops/test_ops_doctor.py::test_stale_handshake only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import Netns, Topology
from opslib import ops, start_server, write_conf

from wgpy import keys

NETNS_PREFIX = "wgo"


@dataclass
class Server:
    topo: Topology
    ns: Netns
    ifname: str
    config: Path
    private_key: str
    uplink: str
    phone_private: str = ""
    upstream: Netns | None = None

    def append(self, text: str) -> None:
        with self.config.open("a") as handle:
            handle.write(text)

    def wg_set(self, *args: str) -> None:
        self.topo.wg(self.ns, "set", self.ifname, *args)


def build(topo: Topology) -> Server:
    server, upstream = topo.netns("srv"), topo.netns("up")
    uplink, _ = topo.veth(server, upstream, ["192.0.2.1/24"], ["192.0.2.254/24"])
    server.run(["ip", "route", "add", "default", "via", "192.0.2.254"])
    private, _ = topo.genkey()
    phone_private, phone = topo.genkey()
    text = (
        "[Interface]\n"
        f"PrivateKey = {private}\n"
        "ListenPort = 51820\n"
        "Address = 10.9.0.1/24\n"
        "MTU = 1420\n"
        "\n[Peer]\n# friendly_name = phone\n"
        f"PublicKey = {phone}\n"
        f"PresharedKey = {topo.genpsk()}\n"
        "AllowedIPs = 10.9.0.2/32\n"
    )
    ifname = topo.ifname("d")
    config = start_server(topo, server, "wireguard-go", ifname, text)
    return Server(topo, server, ifname, config, private, uplink, phone_private, upstream)


def doctor(server: Server, *extra: str | Path) -> tuple[int, list[dict[str, str]]]:
    args = list(extra) or [server.ifname, "--config", server.config]
    result = ops(server.ns, "doctor", *args, "--json")
    document = json.loads(result.stdout)
    assert document["ok"] == (result.returncode == 0), result.stdout
    findings = [f for report in document["reports"] for f in report["findings"]]
    return result.returncode, findings


def new_key() -> str:
    return keys.key_to_base64(keys.public_key(keys.generate_private_key()))


# -- the breakages --------------------------------------------------------------------------------


def world_readable(s: Server) -> None:
    s.config.chmod(0o644)


def own_key_as_peer(s: Server) -> None:
    own = keys.key_to_base64(keys.public_key(keys.key_from_base64(s.private_key)))
    s.append(f"\n[Peer]\n# friendly_name = myself\nPublicKey = {own}\nAllowedIPs = 10.9.0.9/32\n")


def private_key_pasted(s: Server) -> None:
    s.append(f"\n[Peer]\n# friendly_name = pasted\nPublicKey = {s.private_key}\n"
             "AllowedIPs = 10.9.0.9/32\n")


def duplicate_allowed_ips(s: Server) -> None:
    s.append(f"\n[Peer]\n# friendly_name = tablet\nPublicKey = {new_key()}\n"
             "AllowedIPs = 10.9.0.2/32\n")


def lan_route_overlap(s: Server) -> None:
    _lan, _ = s.topo.veth(s.ns, s.topo.netns("lan"), ["192.168.77.1/24"], ["192.168.77.2/24"])
    key = new_key()
    s.wg_set("peer", key, "allowed-ips", "10.9.0.5/32,192.168.77.0/24")
    s.append(f"\n[Peer]\n# friendly_name = office\nPublicKey = {key}\n"
             "AllowedIPs = 10.9.0.5/32, 192.168.77.0/24\n")


def endpoint_in_allowed_ips(s: Server) -> None:
    key = new_key()
    s.wg_set("peer", key, "endpoint", "203.0.113.9:51820", "allowed-ips", "203.0.113.0/24")
    s.append(f"\n[Peer]\n# friendly_name = site\nPublicKey = {key}\nEndpoint = 203.0.113.9:51820\n"
             "AllowedIPs = 203.0.113.0/24\n")


def forwarding_peer_without_ip_forward(s: Server) -> None:
    key = new_key()
    s.wg_set("peer", key, "allowed-ips", "10.9.0.6/32,192.168.60.0/24")
    s.append(f"\n[Peer]\n# friendly_name = branch\nPublicKey = {key}\n"
             "AllowedIPs = 10.9.0.6/32, 192.168.60.0/24\n")


def forwarding_server_without_masquerade(s: Server) -> None:
    s.ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])


def input_policy_drop(s: Server) -> None:
    s.ns.run(["nft", ("add table inet wgofilter; "
              "add chain inet wgofilter input { type filter hook input priority 0; policy drop; }; "
              "add rule inet wgofilter input tcp dport 22 accept")])


def peer_without_psk(s: Server) -> None:
    key = new_key()
    s.wg_set("peer", key, "allowed-ips", "10.9.0.7/32")
    s.append(f"\n[Peer]\n# friendly_name = nopsk\nPublicKey = {key}\nAllowedIPs = 10.9.0.7/32\n")


def mtu_too_big(s: Server) -> None:
    s.config.write_text(s.config.read_text().replace("MTU = 1420", "MTU = 1500"))


def unparsable(s: Server) -> None:
    s.append("AllowedIPs = 10.9.0.300/32\n")


def duplicate_peer_key(s: Server) -> None:
    phone = s.topo.wg(s.ns, "show", s.ifname, "peers").stdout.split()[0]
    s.append(f"\n[Peer]\n# friendly_name = phone again\nPublicKey = {phone}\n"
             "AllowedIPs = 10.9.0.8/32\n")


def peer_added_live_without_route(s: Server) -> None:
    key = new_key()
    s.wg_set("peer", key, "allowed-ips", "10.9.0.6/32,192.168.61.0/24")
    s.append(f"\n[Peer]\n# friendly_name = shop\nPublicKey = {key}\n"
             f"PresharedKey = {s.topo.genpsk()}\nAllowedIPs = 10.9.0.6/32, 192.168.61.0/24\n")


def save_config_over_comments(s: Server) -> None:
    s.config.write_text(s.config.read_text().replace("MTU = 1420\n",
                                                     "MTU = 1420\nSaveConfig = true\n"))


@dataclass
class Case:
    check: str
    status: str
    breakage: Callable[[Server], None]
    message: str
    fix: str = ""


CASES = [
    Case("file-mode", "fail", world_readable, "is 0644", "chmod 600 "),
    Case("own-key-as-peer", "fail", own_key_as_peer, "myself (", "remove that [Peer]"),
    Case("private-key-as-public", "fail", private_key_pasted, "PRIVATE key", "wg genkey"),
    Case("allowed-ips-overlap", "fail", duplicate_allowed_ips,
         "10.9.0.2/32 is in the AllowedIPs of both phone (", "keep 10.9.0.2/32 on one peer"),
    Case("route-overlap", "warn", lan_route_overlap, "192.168.77.0/24 of office (",
         "192.168.77.0/25 + 192.168.77.128/25"),
    Case("endpoint-in-allowed-ips", "fail", endpoint_in_allowed_ips,
         "endpoint 203.0.113.9 is inside its AllowedIPs 203.0.113.0/24",
         "replace 203.0.113.0/24 by 203.0.113.0/29, 203.0.113.8/32, 203.0.113.10/31"),
    Case("ip-forwarding", "fail", forwarding_peer_without_ip_forward,
         "192.168.60.0/24 via branch (", "sysctl -w net.ipv4.ip_forward=1"),
    Case("masquerade", "fail", forwarding_server_without_masquerade,
         "no MASQUERADE/SNAT rule", "iptables -t nat -A POSTROUTING -s 10.9.0.0/24 -o UPLINK"),
    Case("firewall-port", "fail", input_policy_drop, "drops UDP 51820",
         "udp dport 51820 accept"),
    Case("preshared-key", "warn", peer_without_psk, "nopsk (", "wg genpsk"),
    Case("mtu", "warn", mtu_too_big, "exceeds", "set MTU = 1420"),
    Case("config", "fail", unparsable, ".conf:12: AllowedIPs: Unable to parse IP address", ""),
    Case("duplicate-peer", "fail", duplicate_peer_key, "[Peer] sections at lines 7, 13 of ",
         "merge them into one [Peer]"),
    Case("allowed-ips-routed", "warn", peer_added_live_without_route,
         "192.168.61.0/24 of shop (", "ip route add 192.168.61.0/24 dev IFNAME"),
    Case("save-config", "warn", save_config_over_comments,
         "drops its comments: 1 line (9): peer names", "SaveConfig = false"),
]


def _matching(findings: list[dict[str, str]], check: str, status: str) -> list[dict[str, str]]:
    return [f for f in findings if f["check"] == check and f["status"] == status]


@pytest.mark.parametrize("case", CASES, ids=[c.check for c in CASES])
def test_doctor_finds(topo: Topology, case: Case) -> None:
    check_case(build(topo), case, doctor)


def check_case(server: Any, case: Case,
               run_doctor: Callable[[Any], tuple[int, list[dict[str, str]]]]) -> None:
    """A healthy server passes, `case.breakage` makes doctor report the case with its fix,
    and a fail (not a warning) makes the exit status 1. The kernel group runs the same cases
    on a kernel server."""
    status, findings = run_doctor(server)
    assert status == 0, findings
    # the healthy baseline's only warning: phone has not connected yet
    assert [f["check"] for f in findings if f["status"] == "warn"] == ["never-handshaked"]

    case.breakage(server)
    status, findings = run_doctor(server)
    matching = _matching(findings, case.check, case.status)
    assert matching, json.dumps(findings, indent=1)
    fix = case.fix.replace("UPLINK", server.uplink).replace("IFNAME", server.ifname)
    assert any(case.message in f["message"] and fix in f["fix"] for f in matching), matching
    if case.status == "fail":
        assert status == 1
    else:  # a warning alone does not fail doctor (the overlap also makes a forwarding peer)
        assert not _matching(findings, case.check, "fail")


def test_doctor_masquerade_and_firewall_fixed(topo: Topology) -> None:
    """The fixes doctor suggests make its findings go away."""
    server = build(topo)
    forwarding_server_without_masquerade(server)
    input_policy_drop(server)
    assert doctor(server)[0] == 1
    server.ns.run(["nft", ("add table ip wgonat; "
                   "add chain ip wgonat post { type nat hook postrouting priority 100; }; "
                   f"add rule ip wgonat post oifname {server.uplink} masquerade")])
    server.ns.run(["nft", "add rule inet wgofilter input udp dport 51820 accept"])
    status, findings = doctor(server)
    assert status == 0, findings
    assert _matching(findings, "masquerade", "ok") and _matching(findings, "firewall-port", "ok")


def test_doctor_peer_without_endpoint_never_handshaking(topo: Topology) -> None:
    server = build(topo)
    _, findings = doctor(server)
    (finding,) = _matching(findings, "never-handshaked", "warn")
    assert "phone (" in finding["message"] and "no endpoint" in finding["message"]
    assert "PersistentKeepalive = 25 on its side" in finding["fix"]


def test_doctor_full_tunnel_client_without_dns(topo: Topology) -> None:
    ns = topo.netns("cli")
    client = write_conf(topo, topo.ifname("c"), (
        f"[Interface]\nPrivateKey = {topo.genkey()[0]}\nAddress = 10.9.0.2/32\n\n"
        f"[Peer]\nPublicKey = {new_key()}\nPresharedKey = {topo.genpsk()}\n"
        "AllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = 192.0.2.1:51820\n"))
    status, findings = doctor(Server(topo, ns, "", client, "", ""), "--config", client)
    (finding,) = _matching(findings, "dns-leak", "warn")
    assert "full tunnel without DNS" in finding["message"] and "DNS = " in finding["fix"]
    assert _matching(findings, "interface", "warn")  # named after the file, not running
    assert status == 0


def test_doctor_added_route_fixes_unrouted_allowed_ips(topo: Topology) -> None:
    server = build(topo)
    peer_added_live_without_route(server)
    assert _matching(doctor(server)[1], "allowed-ips-routed", "warn")
    server.ns.run(["ip", "route", "add", "192.168.61.0/24", "dev", server.ifname])
    _, findings = doctor(server)
    assert _matching(findings, "allowed-ips-routed", "ok"), findings


# -- the packet path of a full-tunnel server: the route a client's packet takes -----------------


def build_gateway(topo: Topology) -> Server:
    """The guide's full-tunnel server on a host whose uplink is called ens3 (not eth0):
    forwarding on, the uplink renamed inside the server's namespace, default route via `up`."""
    server = build(topo)
    server.ns.run(["ip", "link", "set", server.uplink, "down"])
    server.ns.run(["ip", "link", "set", server.uplink, "name", "ens3"])
    server.ns.run(["ip", "link", "set", "ens3", "up"])
    server.ns.run(["ip", "route", "replace", "default", "via", "192.0.2.254", "dev", "ens3"])
    server.ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    server.uplink = "ens3"
    return server


def test_doctor_masquerade_on_the_guides_eth0_is_a_failure(topo: Topology) -> None:
    server = build_gateway(topo)
    guide = "iptables -t nat -A POSTROUTING -s 10.9.0.0/24 -o eth0 -j MASQUERADE"
    server.ns.run(guide.split())
    status, findings = doctor(server)
    (finding,) = _matching(findings, "masquerade", "fail")
    assert status == 1
    assert (f"clients' traffic leaves by ens3 (ip route get 1.1.1.1 from 10.9.0.2 iif "
            f"{server.ifname}) but the MASQUERADE/SNAT rules only cover -o eth0") \
        in finding["message"], finding
    fix = "iptables -t nat -A POSTROUTING -s 10.9.0.0/24 -o ens3 -j MASQUERADE"
    assert finding["fix"].startswith(fix + " (and fix the PostUp"), finding
    server.ns.run(["iptables", "-t", "nat", "-D", "POSTROUTING", *guide.split()[5:]])
    server.ns.run(fix.split())
    status, findings = doctor(server)
    (ok,) = _matching(findings, "masquerade", "ok")
    assert "leaves by ens3" in ok["message"] and status == 0, findings


def test_doctor_masquerade_fix_carries_a_clients_packets(topo: Topology) -> None:
    """The same setup with a real client: the phone pings an "internet" address (on the
    upstream namespace's loopback, which has no route back to the tunnel). With the guide's
    `-o eth0` rule its packets leave unmasqueraded and the replies are lost -- what doctor
    says; with the rule doctor gives, the ping is answered and doctor passes."""
    server = build_gateway(topo)
    upstream = server.upstream
    assert upstream is not None
    upstream.run(["ip", "address", "add", "198.51.100.1/32", "dev", "lo"])
    upstream.run(["ip", "link", "set", "lo", "up"])
    phone_ns = topo.netns("phone")
    topo.veth(server.ns, phone_ns, ["192.0.3.1/24"], ["192.0.3.2/24"])
    server_public = keys.key_to_base64(keys.public_key(keys.key_from_base64(server.private_key)))
    phone_if = topo.ifname("p")
    start_server(topo, phone_ns, "wireguard-go", phone_if, (
        f"[Interface]\nPrivateKey = {server.phone_private}\nAddress = 10.9.0.2/32\n\n"
        f"[Peer]\nPublicKey = {server_public}\n"
        f"PresharedKey = {_config_psk(server)}\n"
        "AllowedIPs = 10.9.0.0/24, 198.51.100.0/24\nEndpoint = 192.0.3.1:51820\n"))
    for network in ("10.9.0.0/24", "198.51.100.0/24"):
        phone_ns.run(["ip", "route", "add", network, "dev", phone_if])
    phone_ns.ping("10.9.0.1")
    guide = "iptables -t nat -A POSTROUTING -s 10.9.0.0/24 -o eth0 -j MASQUERADE"
    server.ns.run(guide.split())
    lost = phone_ns.run(["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "198.51.100.1"],
                        check=False)
    assert lost.returncode != 0, lost.stdout
    (finding,) = _matching(doctor(server)[1], "masquerade", "fail")
    _run_fix(server, finding["fix"].split(" (and fix")[0])
    phone_ns.ping("198.51.100.1")
    status, findings = doctor(server)
    assert _matching(findings, "masquerade", "ok") and status == 0, findings


def _config_psk(server: Server) -> str:
    line = next(line for line in server.config.read_text().splitlines()
                if line.startswith("PresharedKey = "))
    return line.removeprefix("PresharedKey = ")


def _run_fix(server: Server, fix: str) -> None:
    server.ns.run(["bash", "-c", fix])


@pytest.mark.parametrize("tool", ["iptables", "nft"])
def test_doctor_forward_policy_drop_without_replies(topo: Topology, tool: str) -> None:
    """FORWARD policy drop with only the tunnel's inbound accepted: the clients' requests go
    out, the replies never come back. doctor names the missing rule; adding it passes."""
    server = build_gateway(topo)
    server.ns.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.9.0.0/24",
                   "-o", "ens3", "-j", "MASQUERADE"])
    if tool == "iptables":
        server.ns.run(["iptables", "-P", "FORWARD", "DROP"])
        server.ns.run(["iptables", "-A", "FORWARD", "-i", server.ifname, "-j", "ACCEPT"])
        missing = (f"iptables -A FORWARD -o {server.ifname} -m conntrack --ctstate "
                   "RELATED,ESTABLISHED -j ACCEPT")
    else:
        server.ns.run(["nft", (
            "add table inet wgofw; "
            "add chain inet wgofw forward { type filter hook forward priority 0; policy drop; }; "
            f"add rule inet wgofw forward iifname \"{server.ifname}\" accept")])
        missing = (f'nft add rule inet wgofw forward oifname "{server.ifname}" '
                   "ct state established,related accept")
    status, findings = doctor(server)
    (finding,) = _matching(findings, "forward-firewall", "fail")
    assert status == 1
    assert f"nothing accepts replies back to {server.ifname}" in finding["message"]
    assert finding["fix"] == missing
    _run_fix(server, missing)
    status, findings = doctor(server)
    assert _matching(findings, "forward-firewall", "ok") and status == 0, findings


def test_doctor_forward_policy_drop_nothing_from_the_tunnel(topo: Topology) -> None:
    server = build_gateway(topo)
    server.ns.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "ens3", "-j", "MASQUERADE"])
    server.ns.run(["iptables", "-P", "FORWARD", "DROP"])
    server.ns.run(["iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate",
                   "RELATED,ESTABLISHED", "-j", "ACCEPT"])
    status, findings = doctor(server)
    (finding,) = _matching(findings, "forward-firewall", "fail")
    assert f"packets in from {server.ifname}" in finding["message"] and status == 1
    assert finding["fix"] == f"iptables -A FORWARD -i {server.ifname} -j ACCEPT"
    _run_fix(server, finding["fix"])
    assert doctor(server)[0] == 0


# -- what doctor cannot check it says, and fails -------------------------------------------------


def test_doctor_missing_interface_or_config_fails(topo: Topology) -> None:
    ns = topo.netns("srv")
    missing = topo.ifname("m")
    result = ops(ns, "doctor", missing)
    assert result.returncode == 1, result.stdout
    assert f"FAIL  interface                {missing} is not running" in result.stdout
    assert " OK " not in result.stdout and "Traceback" not in result.stderr, result.stdout
    nowhere = topo.tmpdir / "nowhere.conf"
    result = ops(ns, "doctor", "--config", nowhere)
    assert result.returncode == 1 and f"FAIL  config                   {nowhere}: No such file" \
        in result.stdout, result.stdout
    assert " OK " not in result.stdout


NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
          # only so that nobody can load Python from root's 0700 home: no other privilege
          "--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]


def as_nobody(ns: Netns, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return ns.run([*NOBODY, sys.executable, "-m", "wgpy.cli.wg", *map(str, args)],
                  check=False, timeout=30)


def test_operator_tools_say_run_as_root(topo: Topology) -> None:
    server = build(topo)
    for args in (["doctor", server.ifname, "--config", server.config],
                 ["doctor"],
                 ["check-handshakes", server.ifname],
                 ["exporter", "--listen", "127.0.0.1:9586", "-i", server.ifname],
                 ["exporter", "--listen", "127.0.0.1:9586"],
                 ["peers", server.ifname, "--config", server.config],
                 ["disable-peer", server.ifname, "phone", "--config", server.config],
                 ["enable-peer", server.ifname, "phone", "--config", server.config]):
        result = as_nobody(server.ns, *args)
        assert result.returncode == 1, (args, result)
        assert "this needs root (run as root)" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and " OK " not in result.stdout, args
