"""doctor's checks as pure functions: one deliberately broken setup per check, and its fix.

Each test builds a config (and, where the check needs it, a running interface's state and a
host view) and asserts the finding names the problem and the exact fix; a healthy setup
passes every check."""

from __future__ import annotations

import ipaddress

from wgpy import keys
from wgpy.conf import parse_config
from wgpy.model import DeviceState, PeerState
from wgpy.ops import doctor, firewall
from wgpy.ops.doctor import Status
from wgpy.ops.system import HostView, Route

net = ipaddress.ip_network
SERVER = keys.generate_private_key()
PHONE = keys.public_key(keys.generate_private_key())
LAPTOP = keys.public_key(keys.generate_private_key())
PSK = keys.key_to_base64(keys.generate_preshared_key())
NOW = 1_800_000_000.0


def conf(interface_extra: str = "", peers: str | None = None, path: str = "/e/wg0.conf"):  # type: ignore[no-untyped-def]
    if peers is None:
        peers = peer_text(PHONE, "10.8.0.2/32", name="phone")
    text = ("[Interface]\n"
            f"PrivateKey = {keys.key_to_base64(SERVER)}\n"
            "ListenPort = 51820\n"
            "Address = 10.8.0.1/24\n"
            f"{interface_extra}\n{peers}")
    return parse_config(text, path=path)


def peer_text(key: bytes, allowed: str, name: str | None = None, endpoint: str | None = None,
              psk: bool = True) -> str:
    lines = ["[Peer]"]
    if name:
        lines.append(f"# friendly_name = {name}")
    lines.append(f"PublicKey = {keys.key_to_base64(key)}")
    if psk:
        lines.append(f"PresharedKey = {PSK}")
    lines.append(f"AllowedIPs = {allowed}")
    if endpoint:
        lines.append(f"Endpoint = {endpoint}")
    return "\n".join(lines) + "\n\n"


def host(**kwargs) -> HostView:  # type: ignore[no-untyped-def]
    defaults = {
        "routes": [Route(net("0.0.0.0/0"), "eth0", "192.0.2.1"), Route(net("192.0.2.0/24"), "eth0"),
                Route(net("10.8.0.0/24"), "wg0")],
        "link_mtus": {"eth0": 1500, "wg0": 1420, "lo": 65536},
        "ipv4_forwarding": False, "ipv6_forwarding": False,
        "firewall_text": "### nft list ruleset\n",
        "file_modes": {"/e/wg0.conf": 0o600}, "now": NOW,
    }
    defaults.update(kwargs)
    return HostView(**defaults)  # type: ignore[arg-type]


def run(config, live=None, view=None, only=None):  # type: ignore[no-untyped-def]
    subject = doctor.build_subject("wg0", config, config.path if config else None, live)
    return doctor.run_checks(subject, view or host(), only=[only] if only else None)


def bad(findings, check):  # type: ignore[no-untyped-def]
    return [f for f in findings if f.check == check and f.status in (Status.WARN, Status.FAIL)]


def test_healthy_server_passes_every_check() -> None:
    live = DeviceState(private_key=SERVER, listen_port=51820, peers=[
        PeerState(public_key=PHONE, preshared_key=keys.key_from_base64(PSK),
                  endpoint=("198.51.100.7", 40000), allowed_ips=[net("10.8.0.2/32")],
                  last_handshake_sec=int(NOW) - 30)])
    findings = run(conf("MTU = 1420"), live)
    assert [f for f in findings if f.status in (Status.WARN, Status.FAIL)] == []
    assert {f.check for f in findings} == {name for name, _ in doctor.CHECKS}
    assert not doctor.has_failures(findings)


def test_file_mode() -> None:
    (finding,) = bad(run(conf(), view=host(file_modes={"/e/wg0.conf": 0o644})), "file-mode")
    assert finding.status is Status.FAIL and finding.fix == "chmod 600 /e/wg0.conf"
    # key files named in PostUp are checked too
    config = conf("PostUp = wg set %i private-key /e/wg0.key")
    (finding,) = bad(run(config, view=host(file_modes={"/e/wg0.conf": 0o600,
                                                       "/e/wg0.key": 0o640})), "file-mode")
    assert "/e/wg0.key is 0640" in finding.message


def test_own_key_listed_as_peer() -> None:
    config = conf(peers=peer_text(keys.public_key(SERVER), "10.8.0.2/32", name="me"))
    (finding,) = bad(run(config), "own-key-as-peer")
    assert finding.status is Status.FAIL and "me (" in finding.message


def test_private_key_pasted_as_public() -> None:
    config = conf(peers=peer_text(SERVER, "10.8.0.2/32", name="oops"))
    (finding,) = bad(run(config), "private-key-as-public")
    assert finding.status is Status.FAIL and "PRIVATE" in finding.message
    assert "wg genkey" in finding.fix
    assert keys.key_to_base64(SERVER) not in finding.message + finding.fix  # never print it


def test_duplicate_and_overlapping_allowed_ips() -> None:
    config = conf(peers=peer_text(PHONE, "10.8.0.2/32", name="phone")
                  + peer_text(LAPTOP, "10.8.0.2/32, 192.168.50.0/24", name="laptop")
                  + peer_text(keys.public_key(keys.generate_private_key()), "192.168.50.128/25",
                              name="nas"))
    findings = bad(run(config), "allowed-ips-overlap")
    assert [f.status for f in findings] == [Status.FAIL, Status.WARN]
    assert "10.8.0.2/32 is in the AllowedIPs of both phone" in findings[0].message
    assert "192.168.50.128/25 (nas" in findings[1].message
    assert "inside 192.168.50.0/24 (laptop" in findings[1].message


def test_local_route_overlap_suggests_the_two_halves() -> None:
    config = conf(peers=peer_text(LAPTOP, "10.8.0.3/32, 192.168.1.0/24", name="office"))
    view = host(routes=[Route(net("0.0.0.0/0"), "eth0"), Route(net("192.168.1.0/24"), "eth0")])
    (finding,) = bad(run(config, view=view), "route-overlap")
    assert "192.168.1.0/24 of office" in finding.message and "dev eth0" in finding.message
    assert "192.168.1.0/25 + 192.168.1.128/25" in finding.fix
    # a wider AllowedIP: the split is of the local route it loses to
    config = conf(peers=peer_text(LAPTOP, "10.8.0.3/32, 10.0.0.0/8", name="corp"))
    view = host(routes=[Route(net("10.20.0.0/16"), "eth1")])
    (finding,) = bad(run(config, view=view), "route-overlap")
    assert "10.20.0.0/17 + 10.20.128.0/17" in finding.fix
    # the tunnel's own route and full-tunnel /0 are fine
    config = conf(peers=peer_text(LAPTOP, "0.0.0.0/0", name="gw"))
    assert bad(run(config), "route-overlap") == []


def test_endpoint_inside_allowed_ips() -> None:
    config = conf(peers=peer_text(LAPTOP, "203.0.113.0/24", name="site",
                                  endpoint="203.0.113.9:51820"))
    (finding,) = bad(run(config), "endpoint-in-allowed-ips")
    assert finding.status is Status.FAIL
    assert "203.0.113.9 is inside its AllowedIPs 203.0.113.0/24" in finding.message
    excluded = [net(text) for text in finding.fix.removeprefix(
        "replace 203.0.113.0/24 by ").split(", ")]
    # the suggested prefixes cover the /24 exactly, except the endpoint
    covered = {a for n in excluded for a in n}
    assert covered == set(net("203.0.113.0/24")) - {ipaddress.ip_address("203.0.113.9")}
    # the same with a full tunnel: wg-quick's fwmark rule handles it
    config = conf(peers=peer_text(LAPTOP, "0.0.0.0/0", endpoint="203.0.113.9:51820"))
    assert bad(run(config), "endpoint-in-allowed-ips") == []


def test_forwarding_peer_without_ip_forward() -> None:
    config = conf(peers=peer_text(LAPTOP, "10.8.0.3/32, 192.168.60.0/24", name="branch"))
    (finding,) = bad(run(config), "ip-forwarding")
    assert finding.status is Status.FAIL and "192.168.60.0/24 via branch" in finding.message
    assert finding.fix.startswith("sysctl -w net.ipv4.ip_forward=1")
    assert bad(run(config, view=host(ipv4_forwarding=True)), "ip-forwarding") == []


def test_gateway_hooks_without_ip_forward() -> None:
    config = conf("PostUp = iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE")
    (finding,) = bad(run(config), "ip-forwarding")
    assert "net.ipv4.ip_forward = 0" in finding.message


def test_full_tunnel_server_without_masquerade() -> None:
    view = host(ipv4_forwarding=True, firewall_text="### nft list ruleset\ntable inet filter {\n}\n")
    (finding,) = bad(run(conf(), view=view), "masquerade")
    assert finding.status is Status.FAIL
    assert finding.fix == ("iptables -t nat -A POSTROUTING -s 10.8.0.0/24 -o eth0 "
                           "-j MASQUERADE (e.g. as PostUp)")
    nat = ("### nft list ruleset\ntable ip nat {\n\tchain postrouting {\n"
           "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
           "\t\toifname \"eth0\" masquerade\n\t}\n}\n")
    assert bad(run(conf(), view=host(ipv4_forwarding=True, firewall_text=nat)), "masquerade") == []
    iptables = "### iptables-save\n*nat\n-A POSTROUTING -s 10.8.0.0/24 -j SNAT --to-source 1.2.3.4\nCOMMIT\n"
    assert bad(run(conf(), view=host(ipv4_forwarding=True, firewall_text=iptables)),
               "masquerade") == []


NFT_DROP = """### nft list ruleset
table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\ttcp dport 22 accept
%s\t}
}
"""


def test_listen_port_blocked_by_nft_and_iptables() -> None:
    (finding,) = bad(run(conf(), view=host(firewall_text=NFT_DROP % "")), "firewall-port")
    assert finding.status is Status.FAIL and "UDP 51820" in finding.message
    assert "udp dport 51820 accept" in finding.fix
    for allow in ("\t\tudp dport 51820 accept\n", "\t\tudp dport { 53, 51820 } accept\n",
                  "\t\tudp dport 51000-52000 counter packets 0 bytes 0 accept\n"):
        assert bad(run(conf(), view=host(firewall_text=NFT_DROP % allow)), "firewall-port") == []
    saved = ("### iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n"
             "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j REJECT --reject-with "
             "icmp-port-unreachable\nCOMMIT\n")
    assert bad(run(conf(), view=host(firewall_text=saved)), "firewall-port")
    allowed = saved.replace("-A INPUT -j REJECT", "-A INPUT -p udp -m udp --dport 51820 -j ACCEPT\n"
                                                  "-A INPUT -j REJECT")
    assert bad(run(conf(), view=host(firewall_text=allowed)), "firewall-port") == []


def test_firewall_sections_and_ports() -> None:
    text = "### nft list ruleset\nA\n### iptables-save\nB\n"
    assert firewall.sections(text) == [("nft list ruleset", "\nA\n"), ("iptables-save", "\nB\n")]
    assert not firewall.blocks_udp_port("### iptables-save\n*filter\n:INPUT ACCEPT\nCOMMIT\n", 1)


def test_peer_without_endpoint_never_handshaked() -> None:
    live = DeviceState(private_key=SERVER, listen_port=51820, peers=[
        PeerState(public_key=PHONE, allowed_ips=[net("10.8.0.2/32")])])
    (finding,) = bad(run(conf(), live), "never-handshaked")
    assert "phone (" in finding.message and "no endpoint" in finding.message
    assert "PersistentKeepalive = 25 on its side" in finding.fix


def test_stale_handshake() -> None:
    live = DeviceState(private_key=SERVER, peers=[
        PeerState(public_key=PHONE, endpoint=("198.51.100.7", 4000),
                  last_handshake_sec=int(NOW) - 600)])
    (finding,) = bad(run(conf(), live), "stale-handshake")
    assert "600 s ago" in finding.message
    live.peers[0].last_handshake_sec = int(NOW) - 100
    assert bad(run(conf(), live), "stale-handshake") == []


def test_missing_preshared_key() -> None:
    config = conf(peers=peer_text(PHONE, "10.8.0.2/32", name="phone", psk=False))
    (finding,) = bad(run(config), "preshared-key")
    assert finding.status is Status.WARN and "wg genpsk" in finding.fix


def test_full_tunnel_client_without_dns() -> None:
    config = conf(peers=peer_text(PHONE, "0.0.0.0/0, ::/0", endpoint="203.0.113.1:51820"))
    (finding,) = bad(run(config), "dns-leak")
    assert "DNS = " in finding.fix
    config = conf("DNS = 10.8.0.1", peers=peer_text(PHONE, "0.0.0.0/0, ::/0",
                                                    endpoint="203.0.113.1:51820"))
    assert bad(run(config), "dns-leak") == []


def test_mtu_hints() -> None:
    (finding,) = bad(run(conf("MTU = 1500")), "mtu")
    assert finding.fix == "set MTU = 1420"
    view = host(link_mtus={"eth0": 1492})  # PPPoE uplink
    (finding,) = bad(run(conf("MTU = 1420"), view=view), "mtu")
    assert finding.fix == "set MTU = 1412"
    v6 = parse_config(f"[Interface]\nPrivateKey = {keys.key_to_base64(SERVER)}\n"
                      "Address = fd00::1/64\nMTU = 1200\n")
    findings = bad(run(v6), "mtu")
    assert findings[0].status is Status.FAIL and "1280" in findings[0].message


def test_text_and_exit_status() -> None:
    findings = run(conf(), view=host(file_modes={"/e/wg0.conf": 0o666}))
    assert doctor.has_failures(findings)
    text = doctor.format_text(findings, "wg0")
    assert "  FAIL  file-mode" in text and "fix: chmod 600 /e/wg0.conf" in text


def test_masquerade_must_match_the_interface_clients_leave_by() -> None:
    guide = ("### iptables-save\n*nat\n:POSTROUTING ACCEPT [0:0]\n"
             "-A POSTROUTING -s 10.8.0.0/24 -o eth0 -j MASQUERADE\nCOMMIT\n")
    view = host(ipv4_forwarding=True, firewall_text=guide, egress={"10.8.0.2": "ens3"},
                routes=[Route(net("0.0.0.0/0"), "ens3", "192.0.2.1")])
    (finding,) = bad(run(conf(), view=view), "masquerade")
    assert finding.status is Status.FAIL
    assert "leaves by ens3 (ip route get 1.1.1.1 from 10.8.0.2 iif wg0)" in finding.message
    assert "only cover -o eth0" in finding.message
    assert finding.fix.startswith("iptables -t nat -A POSTROUTING -s 10.8.0.0/24 -o ens3 "
                                  "-j MASQUERADE")
    for fixed in (guide.replace("-o eth0", "-o ens3"), guide.replace("-o eth0", "-o ens+"),
                  guide.replace("-o eth0 ", "")):
        assert bad(run(conf(), view=host(ipv4_forwarding=True, firewall_text=fixed,
                                         egress={"10.8.0.2": "ens3"})), "masquerade") == []
    other_source = guide.replace("-s 10.8.0.0/24 -o eth0", "-s 10.99.0.0/24 -o ens3")
    assert bad(run(conf(), view=host(ipv4_forwarding=True, firewall_text=other_source,
                                     egress={"10.8.0.2": "ens3"})), "masquerade")


def test_nat_rules_of_nft_and_iptables() -> None:
    text = ('### nft list ruleset\ntable ip nat {\n\tchain POSTROUTING {\n'
            '\t\ttype nat hook postrouting priority srcnat; policy accept;\n'
            '\t\toifname "eth0" ip saddr 10.9.0.0/24 counter packets 0 bytes 0 masquerade\n'
            '\t\toifname != "lo" snat to 192.0.2.1\n\t}\n}\n'
            "### iptables-save\n*nat\n-A POSTROUTING ! -o wg+ -j SNAT --to-source 1.2.3.4\n"
            "COMMIT\n*filter\n-A FORWARD -o eth0 -j MASQUERADE\nCOMMIT\n")
    rules = firewall.source_nat_rules(text)
    assert [(r.out_interface, r.negated, r.source) for r in rules] == [
        ("eth0", False, "10.9.0.0/24"), ("lo", True, None), ("wg+", True, None)]
    assert rules[0].matches_interface("eth0") and not rules[0].matches_interface("ens3")
    assert rules[1].matches_interface("ens3") and not rules[1].matches_interface("lo")
    assert rules[2].matches_interface("ens3") and not rules[2].matches_interface("wg0")
    assert rules[0].matches_source("10.9.0.2") and not rules[0].matches_source("10.8.0.2")


FORWARD_NFT = """### nft list ruleset
table inet filter {
\tchain forward {
\t\ttype filter hook forward priority filter; policy drop;
%s\t}
}
"""


def test_forward_gaps() -> None:
    assert [(g.missing, g.rule) for g in firewall.forward_gaps(
        FORWARD_NFT % '\t\tiifname "wg0" accept\n', "wg0")] == [
        ("back to the tunnel",
         'nft add rule inet filter forward oifname "wg0" ct state established,related accept')]
    both = [g.rule for g in firewall.forward_gaps(FORWARD_NFT % "", "wg0")]
    assert both == ['nft add rule inet filter forward iifname "wg0" accept',
                    ('nft add rule inet filter forward oifname "wg0" ct state established,'
                    'related accept')]
    for fixed in ('\t\tiifname "wg0" accept\n\t\tct state { established, related } accept\n',
                  '\t\tiifname "wg*" accept\n\t\toifname "wg0" accept\n',
                  "\t\taccept\n"):
        assert firewall.forward_gaps(FORWARD_NFT % fixed, "wg0") == [], fixed
    assert firewall.forward_gaps((FORWARD_NFT % "").replace("policy drop", "policy accept"),
                                 "wg0") == []
    saved = "### iptables-save\n*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i wg0 -j ACCEPT\nCOMMIT\n"
    assert [g.rule for g in firewall.forward_gaps(saved, "wg0")] == [
        "iptables -A FORWARD -o wg0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    fixed = saved.replace("COMMIT", "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT\n"
                                    "COMMIT")
    assert firewall.forward_gaps(fixed, "wg0") == []
    catch_all = saved.replace(":FORWARD DROP", ":FORWARD ACCEPT").replace(
        "COMMIT", "-A FORWARD -j REJECT --reject-with icmp-port-unreachable\nCOMMIT")
    assert len(firewall.forward_gaps(catch_all, "wg0")) == 1
    # iptables-nft: its table shows in both dumps; the iptables command is the one to give
    nft_copy = ("### nft list ruleset\ntable ip filter {\n\tchain FORWARD {\n"
                "\t\ttype filter hook forward priority filter; policy drop;\n"
                '\t\tiifname "wg0" counter packets 0 bytes 0 accept\n\t}\n}\n')
    assert [g.tool for g in firewall.forward_gaps(nft_copy + saved, "wg0")] == ["iptables-save"]


def test_forward_firewall_check_on_a_gateway() -> None:
    saved = "### iptables-save\n*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i wg0 -j ACCEPT\nCOMMIT\n"
    (finding,) = bad(run(conf(), view=host(ipv4_forwarding=True, firewall_text=saved)),
                     "forward-firewall")
    assert finding.status is Status.FAIL and "replies back to wg0" in finding.message
    assert bad(run(conf(), view=host(firewall_text=saved)), "forward-firewall") == []


def test_duplicate_peer_keys() -> None:
    config = conf(peers=peer_text(PHONE, "10.8.0.2/32", name="phone")
                  + peer_text(PHONE, "10.8.0.3/32", name="phone2"))
    (finding,) = bad(run(config), "duplicate-peer")
    assert finding.status is Status.FAIL and "lines 6, 12 of /e/wg0.conf" in finding.message


def test_allowed_ips_not_routed_to_the_interface() -> None:
    live = DeviceState(private_key=SERVER, listen_port=51820, peers=[
        PeerState(public_key=PHONE, allowed_ips=[net("10.8.0.2/32"), net("192.168.5.0/24")])])
    config = conf(peers=peer_text(PHONE, "10.8.0.2/32, 192.168.5.0/24", name="phone"))
    subject = doctor.build_subject("wg0", config, config.path, live)
    assert doctor.route_probes(subject).destinations == ["10.8.0.2", "192.168.5.1"]
    view = host(route_devices={"10.8.0.2": "wg0", "192.168.5.1": "eth0"})
    (finding,) = bad(run(config, live, view), "allowed-ips-routed")
    assert "192.168.5.0/24 of phone (" in finding.message and "leave by eth0" in finding.message
    assert finding.fix.startswith("ip route add 192.168.5.0/24 dev wg0")
    view = host(route_devices={"10.8.0.2": "wg0", "192.168.5.1": "wg0"})
    assert bad(run(config, live, view), "allowed-ips-routed") == []


def test_save_config_over_hand_written_comments() -> None:
    config = conf("SaveConfig = true")
    (finding,) = bad(run(config), "save-config")
    assert finding.status is Status.WARN
    assert "drops its comments: 1 line (7): peer names" in finding.message
    assert bad(run(conf("SaveConfig = true", peers=peer_text(PHONE, "10.8.0.2/32"))),
               "save-config") == []
    assert bad(run(conf()), "save-config") == []


def test_forward_accepts_in_chains_jumped_to() -> None:
    """ufw and Docker keep their accept rules in chains FORWARD jumps to; nftables' stock
    config accepts replies through a `ct state vmap`."""
    ufw = ("### iptables-save\n*filter\n:FORWARD DROP [0:0]\n:ufw-before-forward - [0:0]\n"
           ":ufw-user-forward - [0:0]\n"
           "-A FORWARD -j ufw-before-forward\n"
           "-A ufw-before-forward -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
           "-A ufw-before-forward -j ufw-user-forward\n"
           "-A ufw-user-forward -i wg0 -j ACCEPT\nCOMMIT\n")
    assert firewall.forward_gaps(ufw, "wg0") == []
    assert [g.missing for g in firewall.forward_gaps(
        ufw.replace("-A ufw-user-forward -i wg0 -j ACCEPT\n", ""), "wg0")] == ["from the tunnel"]
    vmap = FORWARD_NFT % ("\t\tct state vmap { invalid : drop, established : accept, "
                          "related : accept }\n\t\tjump wg\n")
    vmap = vmap.replace("}\n}\n", '}\n\tchain wg {\n\t\tiifname "wg0" accept\n\t}\n}\n')
    assert firewall.forward_gaps(vmap, "wg0") == []
