"""1,000 peers on one wgpy-daemon, configured with the real `wg`, and handshakes from many
initiators: a reduced bench/scale.py and bench/handshakes.py that assert behaviour, not timing
(the CPU bound is a generous sanity check, not a measurement).
"""

from __future__ import annotations

import base64
import os
import time

import pytest
from load_handshakes import initiators, measure_responder, prebuilt_initiations
from netns import Topology
from procstat import cpu_seconds

NETNS_PREFIX = "wgs"
PEERS = 1000
pytestmark = pytest.mark.e2e


def peer_lines(count: int, first: int = 0) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Config [Peer] sections and, per public key, the endpoint and allowed IPs wg will show."""
    lines: list[str] = []
    expected: dict[str, tuple[str, str]] = {}
    for i in range(first, first + count):
        public = base64.b64encode(os.urandom(32)).decode()
        endpoint = f"192.168.88.{2 + i % 200}:{20000 + i}"
        allowed = f"10.{100 + i // 250}.{i % 250}.1/32,fd00:100::{i + 2:x}/128"
        lines += ["[Peer]", f"PublicKey = {public}", f"AllowedIPs = {allowed}",
                  f"Endpoint = {endpoint}", ""]
        expected[public] = (endpoint, allowed)
    return lines, expected


def dump_peers(topo: Topology, ns: object, ifname: str) -> dict[str, tuple[str, str]]:
    rows = topo.wg(ns, "show", ifname, "dump").stdout.splitlines()[1:]  # type: ignore[arg-type]
    return {fields[0]: (fields[2], fields[3]) for fields in (row.split("\t") for row in rows)}


def test_setconf_of_a_thousand_peers_lists_them_all_and_the_daemon_idles(
    topo: Topology,
) -> None:
    ns = topo.netns("p")
    uplink = topo.netns("u")
    topo.veth(ns, uplink, ["192.168.88.1/24"], [])
    ifname = topo.ifname()
    process = topo.start_wgpy_daemon(ns, ifname)
    private, _ = topo.genkey()
    head = ["[Interface]", f"PrivateKey = {private}", "ListenPort = 51820", ""]
    lines, expected = peer_lines(PEERS)
    topo.wg(ns, "setconf", ifname, str(topo.write_file("\n".join(head + lines))))
    ns.run(["ip", "link", "set", ifname, "up"])
    assert dump_peers(topo, ns, ifname) == expected

    # setconf replaces: half of the peers kept, 300 new ones, the rest removed
    kept = dict(list(expected.items())[: PEERS // 2])
    kept_lines = []
    for public, (endpoint, allowed) in kept.items():
        kept_lines += ["[Peer]", f"PublicKey = {public}", f"AllowedIPs = {allowed}",
                       f"Endpoint = {endpoint}", ""]
    new_lines, new = peer_lines(300, first=PEERS)
    topo.wg(ns, "setconf", ifname, str(topo.write_file("\n".join(head + kept_lines + new_lines))))
    assert dump_peers(topo, ns, ifname) == {**kept, **new}

    time.sleep(0.5)
    before = cpu_seconds(process.pid)
    time.sleep(3.0)
    idle = cpu_seconds(process.pid) - before
    # timers sleep in a heap and housekeeping touches no peer: an idle daemon uses ~0 CPU;
    # 0.3 CPU-s in 3 s would mean something polls (a loaded machine cannot explain it)
    assert idle < 0.3, f"idle daemon used {idle:.2f} CPU-s over 3 s with {len(kept) + 300} peers"
    assert process.poll() is None


def test_every_initiation_from_many_peers_is_answered(topo: Topology) -> None:
    private_b64, public_b64 = topo.genkey()
    devices = initiators(base64.b64decode(public_b64), 100)
    messages = prebuilt_initiations(devices, 200)
    result = measure_responder(topo, "wgpy", private_b64, devices, messages, rate=100.0,
                               seconds=2.0, window=16)
    assert result["sent"] >= 190, result
    assert result["responses"] == result["sent"], result
    assert result["cookie_replies"] == 0 and result["other"] == 0, result
    # the responder learned each initiator's address from its authenticated initiation
    rows = topo.wg(result["server"], "show", result["ifname"], "dump").stdout.splitlines()[1:]
    endpoints = {row.split("\t")[2] for row in rows}
    assert len(rows) == 100
    assert {e.rsplit(":", 1)[0] for e in endpoints} == {"10.96.0.2"}, endpoints
