"""Scenario 4, split route: the local and the remote LAN are both 192.168.1.0/24. AllowedIPs
192.168.1.0/25 and 192.168.1.128/25 are more specific than the local /24, so the remote LAN is
reached through the tunnel while the local route stays. Configs: examples/split-route/.

    printer (192.168.1.20) -- client (192.168.1.50 | 198.51.100.2) == remote gw (198.51.100.1)
        -- remote host (192.168.1.200), remote LAN 192.168.1.0/24 too
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


@pytest.mark.parametrize(("client_impl", "remote_impl"), PAIRS, ids=PAIR_IDS)
def test_split_route(topo: Topology, client_impl: str, remote_impl: str) -> None:
    printer, client, remote, remote_host = (
        topo.netns(r) for r in ("printer", "client", "remote", "rhost")
    )
    client_lan, _ = topo.veth(client, printer, ["192.168.1.50/24"], ["192.168.1.20/24"])
    topo.veth(client, remote, ["198.51.100.2/24"], ["198.51.100.1/24"])
    topo.veth(remote, remote_host, ["192.168.1.1/24"], ["192.168.1.200/24"])
    remote_host.run(["ip", "route", "add", "default", "via", "192.168.1.1"])

    key_map = keys(topo, "client", "remote")
    if_client, if_remote = topo.ifname("c"), topo.ifname("r")
    conf_client = write_conf(topo, if_client, from_example("split-route/client.conf", key_map))
    conf_remote = write_conf(topo, if_remote, from_example("split-route/remote.conf", key_map))
    before = snapshot(client)

    wgpy_quick(topo, remote, "up", conf_remote, remote_impl)
    wgpy_quick(topo, client, "up", conf_client, client_impl)

    routes = client.run(["ip", "-4", "route", "show"]).stdout
    assert f"192.168.1.0/24 dev {client_lan} proto kernel" in routes  # the local route stays
    assert f"192.168.1.0/25 dev {if_client}" in routes
    assert f"192.168.1.128/25 dev {if_client}" in routes
    assert f"dev {if_client}" in client.run(["ip", "route", "get", "192.168.1.200"]).stdout
    client.ping("192.168.1.200")
    assert remote_address_seen(topo, remote_host, client, "192.168.1.200") == "10.73.0.2"

    wgpy_quick(topo, client, "down", conf_client, client_impl)
    wgpy_quick(topo, remote, "down", conf_remote, remote_impl)
    assert_restored(before, snapshot(client))
    # The local LAN is used again once the tunnel is down.
    assert f"dev {client_lan}" in client.run(["ip", "route", "get", "192.168.1.20"]).stdout
    client.ping("192.168.1.20")
