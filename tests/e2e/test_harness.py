"""The e2e harness proven with wireguard-go <-> wireguard-go (and a template for other e2e tests).

Copy this shape: take the `topo` fixture, make namespaces and a veth, start two userspace
WireGuards, configure them with the real `wg` through `topo.configure_pair`, then assert on
traffic and on `wg show`. Everything is removed after the test, also when it fails.
"""

from __future__ import annotations

import inspect
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from netns import (
    REGISTRY_DIR,
    WIREGUARD_RUN_DIR,
    Topology,
    WgEnd,
    bare_address,
    clean_stale,
    namespace_exists,
    namespace_pids,
    unique_name,
    wait_for,
)

NETNS_PREFIX = "wgh"
pytestmark = pytest.mark.e2e

OUTER_A = ("192.168.77.1/24", "fd00:77::1/64")
OUTER_B = ("192.168.77.2/24", "fd00:77::2/64")


def make_wireguard_go_pair(topo: Topology, outer_v6: bool = False) -> tuple[WgEnd, WgEnd]:
    """Two namespaces, a veth with v4+v6, wireguard-go on each side, configured as peers."""
    a = topo.netns("a")
    b = topo.netns("b")
    topo.veth(a, b, OUTER_A, OUTER_B)
    a_if, b_if = topo.ifname(), topo.ifname()
    topo.start_wireguard_go(a, a_if)
    topo.start_wireguard_go(b, b_if)
    outer = 1 if outer_v6 else 0
    return topo.configure_pair(
        a, a_if, b, b_if, a_host=bare_address(OUTER_A[outer]), b_host=bare_address(OUTER_B[outer])
    )


@pytest.mark.parametrize("outer_v6", [False, True], ids=["outer4", "outer6"])
def test_wireguard_go_pair_pings_v4_and_v6_and_reports_handshake(
    topo: Topology, outer_v6: bool
) -> None:
    end_a, end_b = make_wireguard_go_pair(topo, outer_v6=outer_v6)

    end_a.ns.ping(end_b.ip4)
    end_b.ns.ping(end_a.ip6)

    dump = topo.wg_dump(end_a.ns, end_a.ifname)
    peer = dump.peers[end_b.public_key]
    assert dump.public_key == end_a.public_key
    assert dump.listen_port == end_a.listen_port
    assert peer.latest_handshake > 0
    assert peer.rx_bytes > 0 and peer.tx_bytes > 0
    expected_endpoint = "[fd00:77::2]:51821" if outer_v6 else "192.168.77.2:51821"
    assert peer.endpoint == expected_endpoint
    assert sorted(peer.allowed_ips) == ["10.77.0.2/32", "fd77::2/128"]
    human = topo.wg(end_a.ns, "show", end_a.ifname).stdout
    assert "latest handshake:" in human and "transfer:" in human


def test_wireguard_go_pair_carries_tcp(topo: Topology) -> None:
    end_a, end_b = make_wireguard_go_pair(topo)

    report = topo.iperf3(end_b.ns, end_a.ns, end_b.ip4, seconds=2)

    received = report["end"]["sum_received"]
    assert received["bytes"] > 1_000_000, received
    assert received["bits_per_second"] > 1e6, received
    peer = topo.wg_dump(end_b.ns, end_b.ifname).peers[end_a.public_key]
    assert peer.rx_bytes >= received["bytes"]


def test_responder_without_endpoint_learns_it(topo: Topology) -> None:
    a = topo.netns("a")
    b = topo.netns("b")
    topo.veth(a, b, OUTER_A, OUTER_B)
    a_if, b_if = topo.ifname(), topo.ifname()
    topo.start_wireguard_go(a, a_if)
    topo.start_wireguard_go(b, b_if)
    end_a, end_b = topo.configure_pair(a, a_if, b, b_if, a_host=None, b_host="192.168.77.2")
    assert topo.wg_dump(b, b_if).peers[end_a.public_key].endpoint is None

    a.ping(end_b.ip4)

    assert topo.wg_dump(b, b_if).peers[end_a.public_key].endpoint == "192.168.77.1:51820"


def test_topology_cleans_up_after_an_exception(e2e_environment: None) -> None:
    prefix = f"wgh-cleanup-{unique_name('', 8)}"
    with pytest.raises(RuntimeError, match="boom"), Topology(prefix) as topo:
        a = topo.netns("a")
        b = topo.netns("b")
        topo.veth(a, b, OUTER_A, OUTER_B)
        ifname = topo.ifname()
        daemon = topo.start_wireguard_go(a, ifname)
        sleeper = a.popen(["sleep", "300"])
        # A daemon that went to the background (as under wg-quick): untracked PID.
        background_if = topo.ifname()
        topo.track_interface(b, background_if)
        b.run(["wireguard-go", background_if],
              env={"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"})
        background_socket = WIREGUARD_RUN_DIR / f"{background_if}.sock"
        wait_for(background_socket.exists, timeout=5, message=str(background_socket))
        background_daemon_pids = namespace_pids(b.name)
        assert background_daemon_pids
        background = a.run("sleep 300 >/dev/null 2>&1 & echo $!")  # untracked, in our netns
        background_pid = int(background.stdout)
        names = [a.name, b.name]
        socket_path = WIREGUARD_RUN_DIR / f"{ifname}.sock"
        assert all(namespace_exists(name) for name in names)
        assert socket_path.exists()
        raise RuntimeError("boom")

    assert not any(namespace_exists(name) for name in names)
    assert daemon.poll() is not None
    assert sleeper.poll() is not None
    assert not Path(f"/proc/{background_pid}").exists()
    assert not socket_path.exists()
    assert not background_socket.exists()
    assert not any(Path(f"/proc/{pid}").exists() for pid in background_daemon_pids)
    assert not topo.tmpdir.exists()
    assert not (REGISTRY_DIR / f"{topo.short_prefix}-{topo.id}.json").exists()
    listed = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    assert prefix not in listed


CRASHING_OWNER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from netns import Topology
topo = Topology(sys.argv[2]).__enter__()
ns = topo.netns("a")
ifname = topo.ifname()
daemon = topo.start_wireguard_go(ns, ifname)
print(json.dumps([ns.name, ifname, daemon.pid]), flush=True)
time.sleep(300)
"""


def test_clean_stale_removes_what_a_killed_owner_left(e2e_environment: None) -> None:
    prefix = f"wgh-stale-{unique_name('', 8)}"
    owner = subprocess.Popen(
        [sys.executable, "-c", CRASHING_OWNER, str(Path(inspect.getfile(Topology)).parent),
         prefix],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        ns_name, ifname, daemon_pid = json.loads(owner.stdout.readline())
        socket_path = WIREGUARD_RUN_DIR / f"{ifname}.sock"
        assert namespace_exists(ns_name) and socket_path.exists()
        # Owner alive: its record is not touched (other runs' stale records may be).
        assert not any(ns_name in line for line in clean_stale())
        assert namespace_exists(ns_name)
    finally:
        owner.send_signal(signal.SIGKILL)  # no __exit__, as when CI kills a run
        owner.wait()
        owner.stdout.close()

    clean_stale()

    assert not namespace_exists(ns_name)
    assert not socket_path.exists()
    wait_for(lambda: not Path(f"/proc/{daemon_pid}").exists(), timeout=3, message="daemon gone")


def test_wait_for_returns_value_or_times_out() -> None:
    calls = []
    assert wait_for(lambda: calls.append(1) or len(calls) >= 3, timeout=1, interval=0) is True
    with pytest.raises(TimeoutError, match="never"):
        wait_for(lambda: False, timeout=0.05, interval=0.01, message="never")
