"""`wgpy demo`, the README's first command: a working tunnel, then nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _demo_leftovers() -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    sockets = [p.name for p in Path("/var/run/wireguard").glob("wgdemo*.sock")]
    return [line.split()[0] for line in names.splitlines() if line.startswith("wgpy-demo-")] + sockets


@pytest.mark.parametrize("outer", ["v4", "v6"])
def test_demo_shows_a_working_tunnel_and_cleans_up(e2e_environment, outer):
    before = _demo_leftovers()
    args = [sys.executable, "-m", "wgpy.cli.wg", "demo", "--seconds", "1"]
    if outer == "v6":
        args.append("--ipv6-outer")
    result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ping 10.99.0.2 through the tunnel: ok" in out
    assert "ping fd99::2 through the tunnel: ok" in out
    assert "handshake: yes" in out
    assert "per-packet fast path: " in out  # C or pure Python, and why (wgpy/fastpath.py)
    assert "latest handshake:" in out and "transfer:" in out  # the `wgpy show` part
    assert "Gbit/s TCP" in out
    assert out.rstrip().endswith("demo succeeded")
    if outer == "v6":
        assert "endpoint [fdfa::2]:51821" in out
    assert _demo_leftovers() == before
