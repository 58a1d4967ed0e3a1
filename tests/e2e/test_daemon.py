"""wgpy-daemon end to end: real TUN, real UDP over a veth, configured with the real `wg`,
against itself and against wireguard-go, in network namespaces made by the test.

"a" always sends first, so it is the handshake initiator; the pairs (wgpy, wireguard-go) and
(wireguard-go, wgpy) cover both roles for wgpy.
"""

from __future__ import annotations

import time

import pytest
from netns import Topology, WgEnd

NETNS_PREFIX = "wgd"
pytestmark = pytest.mark.e2e

OUTER_A = ("192.168.78.1/24", "fd00:78::1/64")
OUTER_B = ("192.168.78.2/24", "fd00:78::2/64")
PAIRS = {
    "wgpy-wgpy": ("wgpy", "wgpy"),
    "wgpy-wggo": ("wgpy", "wireguard-go"),
    "wggo-wgpy": ("wireguard-go", "wgpy"),
}


def start(topo: Topology, ns, impl: str) -> tuple[str, object]:
    ifname = topo.ifname()
    if impl == "wgpy":
        process = topo.start_wgpy_daemon(ns, ifname)
    else:
        process = topo.start_wireguard_go(ns, ifname)
    return ifname, process


def make_pair(
    topo: Topology,
    impls: tuple[str, str],
    outer_v6: bool = False,
    a_knows_b: bool = True,
    b_knows_a: bool = True,
    **configure,
) -> tuple[WgEnd, WgEnd]:
    a = topo.netns("a")
    b = topo.netns("b")
    topo.veth(a, b, OUTER_A, OUTER_B)
    a_if, _ = start(topo, a, impls[0])
    b_if, _ = start(topo, b, impls[1])
    outer = 1 if outer_v6 else 0
    return topo.configure_pair(
        a, a_if, b, b_if,
        a_host=OUTER_A[outer].split("/")[0] if b_knows_a else None,
        b_host=OUTER_B[outer].split("/")[0] if a_knows_b else None,
        **configure,
    )


@pytest.mark.parametrize("outer_v6", [False, True], ids=["outer4", "outer6"])
@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_handshake_ping_and_wg_show(topo: Topology, pair: str, outer_v6: bool) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair], outer_v6=outer_v6)

    end_a.ns.ping(end_b.ip4)
    end_a.ns.ping(end_b.ip6)
    end_b.ns.ping(end_a.ip4)
    end_b.ns.ping(end_a.ip6)

    for local, remote, host in ((end_a, end_b, OUTER_B), (end_b, end_a, OUTER_A)):
        dump = topo.wg_dump(local.ns, local.ifname)
        assert dump.public_key == local.public_key
        assert dump.listen_port == local.listen_port
        peer = dump.peers[remote.public_key]
        assert peer.latest_handshake > 0
        assert peer.rx_bytes > 0 and peer.tx_bytes > 0
        outer_host = host[1 if outer_v6 else 0].split("/")[0]
        expected = f"[{outer_host}]" if outer_v6 else outer_host
        assert peer.endpoint == f"{expected}:{remote.listen_port}"
        assert sorted(peer.allowed_ips) == sorted(
            [f"{remote.ip4}/32", f"{remote.ip6}/128"])


def dump_peer(topo: Topology, local: WgEnd, remote: WgEnd):
    return topo.wg_dump(local.ns, local.ifname).peers[remote.public_key]


def test_latest_handshake_is_reported_in_wall_clock_time(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wgpy"))
    before = int(time.time())
    end_a.ns.ping(end_b.ip4, count=1)
    after = int(time.time()) + 1
    for local, remote in ((end_a, end_b), (end_b, end_a)):
        peer = dump_peer(topo, local, remote)
        assert before - 1 <= peer.latest_handshake <= after
    human = topo.wg(end_a.ns, "show", end_a.ifname).stdout
    assert "latest handshake:" in human and "seconds ago" in human or "Now" in human


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_preshared_key(topo: Topology, pair: str) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair], preshared_key=True)
    end_a.ns.ping(end_b.ip4)
    end_b.ns.ping(end_a.ip6)
    psk_a = dump_peer(topo, end_a, end_b).preshared_key
    assert psk_a is not None and psk_a == dump_peer(topo, end_b, end_a).preshared_key


def test_mismatched_preshared_key_gets_no_handshake(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wireguard-go"), preshared_key=True)
    topo.wg(end_a.ns, "set", end_a.ifname, "peer", end_b.public_key, "preshared-key",
            str(end_a.ns.write_file(topo.genpsk() + "\n", name="psk")))
    result = end_a.ns.run(["ping", "-n", "-c", "2", "-W", "1", end_b.ip4], check=False)
    assert result.returncode != 0
    assert dump_peer(topo, end_a, end_b).latest_handshake == 0
    # clearing the key on both sides restores the tunnel
    for local, remote in ((end_a, end_b), (end_b, end_a)):
        topo.wg(local.ns, "set", local.ifname, "peer", remote.public_key, "preshared-key",
                "/dev/null")
    # (the next initiation goes out when the retransmit timer fires, up to ~5 s later)
    Topology.wait_for(
        lambda: end_a.ns.run(["ping", "-n", "-c", "1", "-W", "1", end_b.ip4],
                             check=False).returncode == 0,
        timeout=12, message="the tunnel with no preshared key on either side")
    assert dump_peer(topo, end_a, end_b).preshared_key is None


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_responder_learns_endpoint_of_initiator(topo: Topology, pair: str) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair], b_knows_a=False)
    assert dump_peer(topo, end_b, end_a).endpoint is None
    end_a.ns.ping(end_b.ip4)
    assert dump_peer(topo, end_b, end_a).endpoint == f"192.168.78.1:{end_a.listen_port}"
    end_b.ns.ping(end_a.ip4)


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_roaming_port_and_address_are_followed(topo: Topology, pair: str) -> None:
    """b moves (new listen port, then new outer address); a follows b's authenticated packets."""
    end_a, end_b = make_pair(topo, PAIRS[pair])
    end_a.ns.ping(end_b.ip4)
    topo.wg(end_b.ns, "set", end_b.ifname, "listen-port", "51999")
    end_b.ns.ping(end_a.ip4)
    assert dump_peer(topo, end_a, end_b).endpoint == "192.168.78.2:51999"
    end_a.ns.ping(end_b.ip4)

    if PAIRS[pair][1] != "wgpy":
        return  # Debian's wireguard-go keeps sending from its old (sticky) source address
    veth_b = end_b.ns.run("ip -o -4 addr show | awk '/192.168.78.2/ {print $2}'").stdout.strip()
    # (deleting a primary address takes its secondaries along: delete first, then add)
    end_b.ns.run(["ip", "addr", "del", "192.168.78.2/24", "dev", veth_b])
    end_b.ns.run(["ip", "addr", "add", "192.168.78.3/24", "dev", veth_b])
    end_b.ns.ping(end_a.ip4)
    assert dump_peer(topo, end_a, end_b).endpoint == "192.168.78.3:51999"
    end_a.ns.ping(end_b.ip6)


@pytest.mark.parametrize("pair", ["wgpy-wgpy", "wgpy-wggo"])
def test_tcp_both_ways(topo: Topology, pair: str) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair])
    end_a.ns.ping(end_b.ip4, count=1)
    for args in ([], ["-R"]):
        report = topo.iperf3(end_b.ns, end_a.ns, end_b.ip4, args=args, seconds=2)
        received = report["end"]["sum_received"]
        assert received["bytes"] > 2_000_000, (args, received)
    report = topo.iperf3(end_b.ns, end_a.ns, end_b.ip6, seconds=1)
    assert report["end"]["sum_received"]["bytes"] > 1_000_000
    assert dump_peer(topo, end_b, end_a).rx_bytes > 2_000_000


@pytest.mark.parametrize("pair", ["wgpy-wgpy", "wgpy-wggo"])
def test_persistent_keepalive_starts_at_once_and_keeps_the_tunnel_alive(
    topo: Topology, pair: str
) -> None:
    # b has no endpoint for a: only a's keepalives can bring the tunnel up. (Only a gets a
    # keepalive interval: any authenticated packet received also resets the timer, so with
    # both sides at 1 s one side's keepalives keep the other quiet, as in the kernel.)
    end_a, end_b = make_pair(topo, PAIRS[pair], b_knows_a=False)
    assert dump_peer(topo, end_a, end_b).tx_bytes == 0
    topo.wg(end_a.ns, "set", end_a.ifname, "peer", end_b.public_key, "persistent-keepalive", "1")
    # turning it on sends a keepalive at once, which needs a handshake first
    Topology.wait_for(lambda: dump_peer(topo, end_b, end_a).latest_handshake > 0, timeout=3,
                      message="a handshake started by the immediate keepalive")
    assert dump_peer(topo, end_a, end_b).persistent_keepalive == 1
    first = dump_peer(topo, end_b, end_a).rx_bytes
    time.sleep(2.5)
    assert dump_peer(topo, end_b, end_a).rx_bytes >= first + 2 * 32  # two more keepalives
    end_b.ns.ping(end_a.ip4)  # and b has learnt where a is


def test_removing_a_peer(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wireguard-go"))
    end_a.ns.ping(end_b.ip4, count=1)
    topo.wg(end_a.ns, "set", end_a.ifname, "peer", end_b.public_key, "remove")
    assert topo.wg_dump(end_a.ns, end_a.ifname).peers == {}
    result = end_a.ns.run(["ping", "-n", "-c", "1", "-W", "1", end_b.ip4], check=False)
    assert result.returncode != 0
    # b's packets to a are now from an unknown peer's session: dropped, no answer
    result = end_b.ns.run(["ping", "-n", "-c", "1", "-W", "1", end_a.ip4], check=False)
    assert result.returncode != 0
