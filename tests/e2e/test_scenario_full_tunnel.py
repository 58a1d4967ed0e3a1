"""Scenario 1, full tunnel: a client sends everything (0.0.0.0/0, ::/0) through a gateway that
forwards and masquerades to a fake internet host. Configs: examples/full-tunnel/.

    client --(198.51.100.0/24, 2001:db8:1::/64)-- gateway --(203.0.113.0/24, 2001:db8:2::/64)-- host

Without the tunnel the gateway just routes, so the host sees the client's own address; through
the tunnel it sees the gateway's. The client's resolver comes from the DNS line (stand-in
resolvconf writing /etc/netns/CLIENT/resolv.conf).
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
    namespace_resolver,
    no_dad,
    remote_address_seen,
    resolv_conf_seen_in,
    snapshot,
    wgpy_quick,
    write_conf,
)

NETNS_PREFIX = "wgq"


@pytest.mark.parametrize(("client_impl", "gateway_impl"), PAIRS, ids=PAIR_IDS)
def test_full_tunnel(topo: Topology, client_impl: str, gateway_impl: str) -> None:
    client, gateway, internet = topo.netns("cli"), topo.netns("gw"), topo.netns("inet")
    for ns in (client, gateway, internet):
        no_dad(ns)
    client_up, _gateway_down = topo.veth(
        client, gateway, ["198.51.100.2/24", "2001:db8:1::2/64"],
        ["198.51.100.1/24", "2001:db8:1::1/64"],
    )
    gateway_up, _host_if = topo.veth(
        gateway, internet, ["203.0.113.1/24", "2001:db8:2::1/64"],
        ["203.0.113.10/24", "2001:db8:2::10/64"],
    )
    client.run(["ip", "route", "add", "default", "via", "198.51.100.1"])
    client.run(["ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"])
    internet.run(["ip", "route", "add", "default", "via", "203.0.113.1"])
    internet.run(["ip", "-6", "route", "add", "default", "via", "2001:db8:2::1"])
    enable_forwarding(gateway)

    # Before the tunnel: plain routing, the host sees the client itself.
    assert remote_address_seen(topo, internet, client, "203.0.113.10") == "198.51.100.2"

    key_map = keys(topo, "client", "gateway")
    client_if, gateway_if = topo.ifname("c"), topo.ifname("g")
    client_conf = write_conf(topo, client_if, from_example("full-tunnel/client.conf", key_map))
    gateway_conf = write_conf(
        topo, gateway_if, from_example("full-tunnel/gateway.conf", {**key_map, "eth0": gateway_up})
    )
    resolver = namespace_resolver(topo, client)
    try:
        client_before, gateway_before = snapshot(client), snapshot(gateway)

        wgpy_quick(topo, gateway, "up", gateway_conf, gateway_impl)
        # The gateway masquerades only what comes out of the tunnel.
        assert remote_address_seen(topo, internet, client, "203.0.113.10", 7004) == "198.51.100.2"
        wgpy_quick(topo, client, "up", client_conf, client_impl, extra_env=resolver.env)

        # Everything goes through the tunnel and leaves masqueraded behind the gateway.
        assert remote_address_seen(topo, internet, client, "203.0.113.10", 7001) == "203.0.113.1"
        assert remote_address_seen(topo, internet, client, "2001:db8:2::10", 7002) == (
            "2001:db8:2::1"
        )
        # ... except the tunnel's own packets: marked traffic to the endpoint uses the uplink.
        endpoint_route = client.run(
            ["ip", "route", "get", "198.51.100.1", "mark", "51820"]
        ).stdout
        assert f"dev {client_up}" in endpoint_route, endpoint_route
        assert f"dev {client_if}" in client.run(["ip", "route", "get", "203.0.113.10"]).stdout
        rules = client.run(["ip", "-4", "rule", "show"]).stdout
        assert "not from all fwmark 0xca6c lookup 51820" in rules
        assert "from all lookup main suppress_prefixlength 0" in rules
        assert "table ip wg-quick-" + client_if in client.run(["nft", "list", "tables"]).stdout
        assert client.run(["sysctl", "-n", "net.ipv4.conf.all.src_valid_mark"]).stdout == "1\n"
        # MTU from the uplink (1500) minus 80.
        assert "mtu 1420" in client.run(["ip", "link", "show", client_if]).stdout
        # DNS through resolvconf, visible only inside the client namespace.
        assert resolv_conf_seen_in(client) == "nameserver 10.70.0.1\nsearch vpn.example\n"
        assert resolv_conf_seen_in(internet) != resolv_conf_seen_in(client)
        assert f"-a {client_if} -m 0 -x" in resolver.calls()

        wgpy_quick(topo, client, "down", client_conf, client_impl, extra_env=resolver.env)
        wgpy_quick(topo, gateway, "down", gateway_conf, gateway_impl)

        assert_restored(client_before, snapshot(client))
        assert_restored(gateway_before, snapshot(gateway))
        assert resolv_conf_seen_in(client) == resolver.original
        assert f"-d {client_if} -f" in resolver.calls()
        # And plain routing is back.
        assert remote_address_seen(topo, internet, client, "203.0.113.10", 7003) == "198.51.100.2"
    finally:
        resolver.remove()
