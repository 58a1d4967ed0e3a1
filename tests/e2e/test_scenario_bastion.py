"""Scenario 3, bastion: a home site behind a NAT router (no port forward) keeps a tunnel to a
public bastion with PersistentKeepalive; the bastion learns the NATed endpoint; a laptop
reaches the home LAN through the bastion. Configs: examples/bastion/.

    home host (192.168.30.10) -- home gw (10.0.0.2) -- NAT router (198.51.100.2)
        -- bastion (198.51.100.1 | 203.0.113.1) -- laptop (203.0.113.3)
"""

from __future__ import annotations

import pytest
from netns import Topology
from quicklib import (
    PAIR_IDS,
    PAIRS,
    assert_restored,
    enable_forwarding,
    from_example,
    keys,
    remote_address_seen,
    snapshot,
    wgpy_quick,
    write_conf,
)

NETNS_PREFIX = "wgq"


@pytest.mark.parametrize(("home_impl", "bastion_impl"), PAIRS, ids=PAIR_IDS)
def test_bastion(topo: Topology, home_impl: str, bastion_impl: str) -> None:
    host, home, nat, bastion, laptop = (
        topo.netns(r) for r in ("host", "home", "nat", "bastion", "laptop")
    )
    topo.veth(host, home, ["192.168.30.10/24"], ["192.168.30.1/24"])
    topo.veth(home, nat, ["10.0.0.2/24"], ["10.0.0.1/24"])
    _, nat_outside = topo.veth(bastion, nat, ["198.51.100.1/24"], ["198.51.100.2/24"])
    topo.veth(laptop, bastion, ["203.0.113.3/24"], ["203.0.113.1/24"])
    host.run(["ip", "route", "add", "default", "via", "192.168.30.1"])
    home.run(["ip", "route", "add", "default", "via", "10.0.0.1"])
    enable_forwarding(nat)
    # The ISP's NAT: masquerade outgoing, nothing forwarded inward (no port forward).
    nat.run(["nft", "-f", "-"], input=(
        "add table ip nat\n"
        "add chain ip nat postrouting { type nat hook postrouting priority srcnat; }\n"
        f'add rule ip nat postrouting oifname "{nat_outside}" masquerade\n'
        "add table ip filter\n"
        "add chain ip filter forward { type filter hook forward priority 0; policy drop; }\n"
        f'add rule ip filter forward oifname "{nat_outside}" accept\n'
        "add rule ip filter forward ct state established,related accept\n"
    ))

    key_map = keys(topo, "bastion", "home", "laptop")
    if_bastion, if_home, if_laptop = topo.ifname("b"), topo.ifname("h"), topo.ifname("l")
    conf_bastion = write_conf(topo, if_bastion, from_example("bastion/bastion.conf", key_map))
    home_text = from_example("bastion/home.conf", key_map).replace(
        "PersistentKeepalive = 25", "PersistentKeepalive = 1"
    )
    conf_home = write_conf(topo, if_home, home_text)
    conf_laptop = write_conf(topo, if_laptop, from_example("bastion/laptop.conf", key_map))

    before = {ns.name: snapshot(ns) for ns in (home, bastion, laptop)}
    wgpy_quick(topo, bastion, "up", conf_bastion, bastion_impl)
    wgpy_quick(topo, home, "up", conf_home, home_impl)
    wgpy_quick(topo, laptop, "up", conf_laptop, home_impl)

    # Nobody sent anything yet: the keepalive alone makes the bastion learn the home site's
    # endpoint, which is the NAT router's outside address, not 10.0.0.2.
    home_key = key_map["<home public key>"]

    def home_endpoint() -> str | None:
        return topo.wg_dump(bastion, if_bastion).peers[home_key].endpoint

    endpoint = topo.wait_for(home_endpoint, timeout=10, message="the bastion to learn home")
    assert endpoint is not None and endpoint.startswith("198.51.100.2:"), endpoint

    # The laptop reaches the home LAN through the bastion; the bastion initiates nothing
    # towards home (it has no Endpoint for it), it answers over the NAT mapping.
    laptop.ping("192.168.30.10")
    assert remote_address_seen(topo, host, laptop, "192.168.30.10") == "10.72.0.3"

    for ns, conf, impl in ((laptop, conf_laptop, home_impl), (home, conf_home, home_impl),
                           (bastion, conf_bastion, bastion_impl)):
        wgpy_quick(topo, ns, "down", conf, impl)
        assert_restored(before[ns.name], snapshot(ns))
