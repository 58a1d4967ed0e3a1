"""Bounded resources: 1,000 idle peers on wgpy-daemon (bench/peers.py measures; see README
"Security and robustness" for the figures)."""

from __future__ import annotations

import sys

import pytest
from load_peers import measure
from netns import Topology

NETNS_PREFIX = "wgx"
pytestmark = pytest.mark.e2e


def test_thousand_idle_peers_cost_little_memory_and_no_cpu(topo: Topology) -> None:
    result = measure(topo, "wgpy", 1000, rest=3.0)
    print(f"\n{result}")
    assert result.cpu_at_rest_percent < 3.0, result  # timers sleep; nothing polls per peer
    assert 0 < result.bytes_per_peer < 16 * 1024, result
    assert result.setconf_seconds < 10 and result.get_seconds < 5, result


def test_out_of_descriptors_the_daemon_idles_and_still_answers_wg(topo: Topology) -> None:
    """`ulimit -n 64` and 80 connections to the UAPI socket that never send: the daemon runs
    out of descriptors. It must neither spin on its listener (it did: 98 % CPU and a log line
    per failed accept) nor stop answering `wg show`."""
    import socket
    import time

    from procstat import cpu_seconds

    from wgpy.control.uapi import socket_path

    ns = topo.netns("fd")
    ifname = topo.ifname()
    argv = ["prlimit", "--nofile=64", sys.executable, "-m", "wgpy.cli.daemon", "-f"]
    process = topo.start_userspace(ns, ifname, argv)
    idle = []
    try:
        for _ in range(80):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(socket_path(ifname))
            idle.append(client)
        time.sleep(0.5)
        before = cpu_seconds(process.pid)
        time.sleep(3.0)
        used = cpu_seconds(process.pid) - before
        print(f"\n{used:.2f} CPU-s in 3 s with 80 idle connections under ulimit -n 64")
        assert used < 0.5, f"daemon used {used:.2f} CPU-s in 3 s with 80 idle connections"
        shown = topo.wg(ns, "show", ifname, check=False)
        assert shown.returncode == 0 and f"interface: {ifname}" in shown.stdout, shown
        assert process.poll() is None
        log_lines = topo.log_of(process).count("\n")
        assert log_lines < 50, topo.log_of(process)[-2000:]
    finally:
        for client in idle:
            client.close()
