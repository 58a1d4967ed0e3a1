"""Sticky source and MTU events, end to end (issue 13).

The server ("a", wgpy-daemon) has several addresses; the client ("b", wireguard-go or wgpy) talks
to one of them. Replies must come from the address the client sent to: the client follows the
source of authenticated packets (roaming), so its `wg show endpoints` tells which address the
server answered from. Like the kernel's netns.sh: reply-to-sender (IPv4, IPv6), an inbound
address that belongs to another interface, an address removed (fall back to the routing's
choice), a better route through another interface (the cached source is dropped).
"""

from __future__ import annotations

import pytest
from netns import Topology, WgEnd

NETNS_PREFIX = "wgs"

SERVER = ("192.168.79.1/24", "fd00:79::1/64")
SERVER_MORE = ("192.168.79.11/24", "fd00:79::11/64")
CLIENT = ("192.168.79.2/24", "fd00:79::2/64")
CLIENTS = ["wireguard-go", "wgpy"]


def start(topo: Topology, ns, impl: str) -> str:
    ifname = topo.ifname()
    if impl == "wgpy":
        topo.start_wgpy_daemon(ns, ifname)
    else:
        topo.start_wireguard_go(ns, ifname)
    return ifname


def server_and_client(topo: Topology, client_impl: str,
                      server_addresses=SERVER + SERVER_MORE
                      ) -> tuple[WgEnd, WgEnd, str, str]:
    """(server, client, server's veth, client's veth); the client knows no endpoint yet."""
    a, b = topo.netns("srv"), topo.netns("cli")
    veth_a, veth_b = topo.veth(a, b, server_addresses, CLIENT)
    server, client = topo.configure_pair(
        a, start(topo, a, "wgpy"), b, start(topo, b, client_impl), a_host=None, b_host=None)
    return server, client, veth_a, veth_b


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_sees_server_at(topo: Topology, server: WgEnd, client: WgEnd) -> str | None:
    return topo.wg_dump(client.ns, client.ifname).peers[server.public_key].endpoint


def talk_to(topo: Topology, server: WgEnd, client: WgEnd, host: str) -> None:
    """The client sets the server's endpoint to `host` and pings through the tunnel (and the
    server pings back, so it sends data, not only the reply to a handshake)."""
    topo.wg(client.ns, "set", client.ifname, "peer", server.public_key,
            "endpoint", endpoint(host, server.listen_port))
    client.ns.ping(server.ip4, count=1)
    server.ns.ping(client.ip4, count=1)


@pytest.mark.parametrize("client_impl", CLIENTS)
def test_replies_come_from_the_address_the_client_sent_to(topo: Topology,
                                                          client_impl: str) -> None:
    server, client, _, _ = server_and_client(topo, client_impl)
    # every address once, both families, each one after another (the selftest's order): the
    # routing's choice would be the first address of each family
    for address in (SERVER[0], SERVER_MORE[0], SERVER[1], SERVER_MORE[1], SERVER[0]):
        host = address.split("/")[0]
        talk_to(topo, server, client, host)
        assert client_sees_server_at(topo, server, client) == endpoint(host, server.listen_port)


@pytest.mark.parametrize("client_impl", CLIENTS)
def test_inbound_address_on_another_interface(topo: Topology, client_impl: str) -> None:
    """The client reaches the server at an address of another interface (the selftest's
    dummy0; here the server's loopback): the reply comes from that address too."""
    server, client, _, client_veth = server_and_client(topo, client_impl,
                                                       server_addresses=SERVER)
    server.ns.run(["ip", "addr", "add", "10.50.0.1/24", "dev", "lo"])
    client.ns.run(["ip", "route", "add", "10.50.0.0/24", "dev", client_veth])
    talk_to(topo, server, client, SERVER[0].split("/")[0])
    talk_to(topo, server, client, "10.50.0.1")
    assert client_sees_server_at(topo, server, client) == endpoint("10.50.0.1",
                                                                   server.listen_port)


@pytest.mark.parametrize("family", [0, 1], ids=["ipv4", "ipv6"])
def test_a_removed_source_address_falls_back_to_the_routing_choice(topo: Topology,
                                                                   family: int) -> None:
    """The server's cached source leaves: its next packets go out from the address routing
    picks (the selftest's "not overly sticky"), and the client follows."""
    server, client, veth, _ = server_and_client(topo, "wireguard-go")
    if family == 0:
        server.ns.run(["sysctl", "-q", f"net.ipv4.conf.{veth}.promote_secondaries=1"])
    second = SERVER_MORE[family].split("/")[0]
    talk_to(topo, server, client, second)
    assert client_sees_server_at(topo, server, client) == endpoint(second, server.listen_port)
    server.ns.run(["ip", "addr", "del", SERVER_MORE[family], "dev", veth])
    # the server speaks first, from whatever source is left
    server.ns.ping(client.ip4, count=1)
    first = SERVER[family].split("/")[0]
    assert client_sees_server_at(topo, server, client) == endpoint(first, server.listen_port)


def test_a_better_route_through_another_interface_drops_the_cached_source(
        topo: Topology) -> None:
    """The selftest's last sticky case, with wgpy as its n1: a route with a lower metric through
    another interface appears; the cached source (learnt on the old interface) is dropped and
    the next packet leaves from the new route's source."""
    a, b = topo.netns("srv"), topo.netns("cli")
    veth1, _ = topo.veth(a, b, ("10.0.0.1/24",), ("10.0.0.2/24",))
    veth3, veth4 = topo.veth(a, b, ("10.0.0.3/24",), ())
    server, client = topo.configure_pair(
        a, start(topo, a, "wgpy"), b, start(topo, b, "wireguard-go"),
        a_host=None, b_host="10.0.0.2")
    for dev in (veth1, veth3):
        a.run(["ip", "route", "flush", "dev", dev])
    a.run(["ip", "route", "add", "10.0.0.0/24", "dev", veth1, "src", "10.0.0.1", "metric", "2"])
    server.ns.ping(client.ip4, count=1)
    assert client_sees_server_at(topo, server, client) == endpoint("10.0.0.1",
                                                                   server.listen_port)
    a.run(["ip", "route", "add", "10.0.0.0/24", "dev", veth3, "src", "10.0.0.3", "metric", "1"])
    for ns, dev in ((a, veth1), (b, veth4), (a, "all"), (b, "all")):
        ns.run(["sysctl", "-q", f"net.ipv4.conf.{dev}.rp_filter=0"])
    server.ns.ping(client.ip4, count=1)
    assert client_sees_server_at(topo, server, client) == endpoint("10.0.0.3",
                                                                   server.listen_port)


@pytest.mark.parametrize("peer_impl", ["wireguard-go", "wgpy"])
def test_padding_follows_an_mtu_change_at_once(topo: Topology, peer_impl: str) -> None:
    """The selftest's "route MTU": MTU 1300, and a packet right after (here in the same shell
    command, a few milliseconds later) is padded for 1300, not for the old 1420. A 1298-byte
    packet pads to 1312 under 1420 but to 1300 under 1300: datagram 16 + 1300 + 16 = 1332."""
    a, b = topo.netns("a"), topo.netns("b")
    topo.veth(a, b, SERVER, CLIENT)
    sender, receiver = topo.configure_pair(
        a, start(topo, a, "wgpy"), b, start(topo, b, peer_impl),
        a_host=SERVER[0].split("/")[0], b_host=CLIENT[0].split("/")[0])
    sender.ns.ping(receiver.ip4, count=2)  # handshake done, sessions confirmed
    for attempt in range(3):  # each round changes the MTU: the first packet after must fit
        mtu = 1300 if attempt % 2 == 0 else 1420
        before = topo.wg_dump(sender.ns, sender.ifname).peers[receiver.public_key].tx_bytes
        command = (f"ip link set dev {sender.ifname} mtu {mtu} && "
                   f"ping -n -q -c 1 -s {1298 - 28} -W 2 {receiver.ip4}")
        sender.ns.run(["sh", "-c", command])
        after = topo.wg_dump(sender.ns, sender.ifname).peers[receiver.public_key].tx_bytes
        expected = 32 + (1300 if mtu == 1300 else 1312)
        assert after - before in (expected, expected + 32), (mtu, after - before)
