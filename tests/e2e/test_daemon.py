"""wgpy-daemon end to end: real TUN, real UDP over a veth, configured with the real `wg`,
against itself and against wireguard-go, in network namespaces made by the test.

"a" always sends first, so it is the handshake initiator; the pairs (wgpy, wireguard-go) and
(wireguard-go, wgpy) cover both roles for wgpy.
"""

from __future__ import annotations

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
