"""Bounded resources: 1,000 idle peers on wgpy-daemon (bench/peers.py measures; see README
"Security and robustness" for the figures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from netns import Topology

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from peers import measure

NETNS_PREFIX = "wgx"
pytestmark = pytest.mark.e2e


def test_thousand_idle_peers_cost_little_memory_and_no_cpu(topo: Topology) -> None:
    result = measure(topo, "wgpy", 1000, rest=3.0)
    print(f"\n{result}")
    assert result.cpu_at_rest_percent < 3.0, result  # timers sleep; nothing polls per peer
    assert 0 < result.bytes_per_peer < 16 * 1024, result
    assert result.setconf_seconds < 10 and result.get_seconds < 5, result
