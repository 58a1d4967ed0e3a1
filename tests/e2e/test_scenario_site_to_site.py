"""Scenario 2, site-to-site: two LANs behind two gateways reach each other with their real
addresses (no NAT). Configs: examples/site-to-site/.

    host A (192.168.10.10) -- gw A ==(198.51.100.0/24, tunnel)== gw B -- host B (192.168.20.10)
"""

from __future__ import annotations

import pytest
from netns import Topology
from quicklib import (
    PAIR_IDS,
    PAIRS,
    assert_restored,
    from_example,
    keys,
    remote_address_seen,
    snapshot,
    wgpy_quick,
    write_conf,
)

NETNS_PREFIX = "wgq"


@pytest.mark.parametrize(("impl_a", "impl_b"), PAIRS, ids=PAIR_IDS)
def test_site_to_site(topo: Topology, impl_a: str, impl_b: str) -> None:
    host_a, gw_a, gw_b, host_b = (topo.netns(r) for r in ("hosta", "gwa", "gwb", "hostb"))
    topo.veth(host_a, gw_a, ["192.168.10.10/24"], ["192.168.10.1/24"])
    topo.veth(gw_a, gw_b, ["198.51.100.1/24"], ["198.51.100.2/24"])
    topo.veth(gw_b, host_b, ["192.168.20.1/24"], ["192.168.20.10/24"])
    host_a.run(["ip", "route", "add", "default", "via", "192.168.10.1"])
    host_b.run(["ip", "route", "add", "default", "via", "192.168.20.1"])

    # Without the tunnel the LANs cannot reach each other (no routes between them).
    unreachable = host_a.run(["ping", "-c", "1", "-W", "1", "192.168.20.10"], check=False)
    assert unreachable.returncode != 0

    key_map = keys(topo, "site A", "site B")
    if_a, if_b = topo.ifname("a"), topo.ifname("b")
    conf_a = write_conf(topo, if_a, from_example("site-to-site/site-a.conf", key_map))
    conf_b = write_conf(topo, if_b, from_example("site-to-site/site-b.conf", key_map))
    before_a, before_b = snapshot(gw_a), snapshot(gw_b)

    wgpy_quick(topo, gw_a, "up", conf_a, impl_a)
    wgpy_quick(topo, gw_b, "up", conf_b, impl_b)

    routes_a = gw_a.run(["ip", "route", "show"]).stdout
    assert f"192.168.20.0/24 dev {if_a}" in routes_a
    host_a.ping("192.168.20.10")
    host_b.ping("192.168.10.10")
    # Real addresses on both sides: no NAT anywhere.
    assert remote_address_seen(topo, host_b, host_a, "192.168.20.10") == "192.168.10.10"
    assert remote_address_seen(topo, host_a, host_b, "192.168.10.10", 7001) == "192.168.20.10"

    wgpy_quick(topo, gw_a, "down", conf_a, impl_a)
    wgpy_quick(topo, gw_b, "down", conf_b, impl_b)
    # ip_forward was switched on by the PreUp hook and stays on, as with wg-quick.
    assert_restored(before_a, snapshot(gw_a))
    assert_restored(before_b, snapshot(gw_b))
