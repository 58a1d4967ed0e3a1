"""Real-time soak (bench/soak.py): traffic both ways and peer changes through the UAPI while
RSS is sampled; short here (WGPY_SOAK_SECONDS, default 20), longer as a bench."""

from __future__ import annotations

import os

import pytest
from load_soak import MAX_EXTRA_PEERS, soak
from netns import Topology

NETNS_PREFIX = "wgx"
pytestmark = pytest.mark.e2e

SOAK_SECONDS = float(os.environ.get("WGPY_SOAK_SECONDS", "20"))
RSS_GROWTH_LIMIT_KB = 2048


def test_soak_traffic_both_ways_and_peer_changes_rss_stable(topo: Topology) -> None:
    result = soak(topo, SOAK_SECONDS)
    print(f"\nsoak {SOAK_SECONDS:g} s: {result.changes} changes, RSS {result.rss_kb[0]} -> "
          f"{result.rss_kb[-1]} kB (growth {result.rss_growth_kb} kB), "
          f"{result.received_bytes} B one way, {result.reverse_received_bytes} B back")
    assert result.changes >= SOAK_SECONDS  # about two a second
    assert result.received_bytes > 0 and result.reverse_received_bytes > 0
    assert result.peers_at_end == 1 + MAX_EXTRA_PEERS
    assert result.rss_growth_kb < RSS_GROWTH_LIMIT_KB, result.rss_kb
