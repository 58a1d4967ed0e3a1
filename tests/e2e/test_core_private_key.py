"""The private key as the real `wg` sees it on a wgpy-daemon (issue 13, "small kernel
differences"): stored clamped, as the kernel and wireguard-go store it."""

from __future__ import annotations

import base64

import pytest
from netns import Topology

NETNS_PREFIX = "wgk"
pytestmark = pytest.mark.e2e


def test_an_unclamped_private_key_is_shown_clamped(topo: Topology) -> None:
    ns = topo.netns("k")
    ifname = topo.ifname()
    topo.start_wgpy_daemon(ns, ifname)
    unclamped = bytes([0xFF] * 32)
    clamped = bytes([0xF8]) + bytes([0xFF] * 30) + bytes([0x7F])
    key_file = topo.write_file(base64.b64encode(unclamped).decode() + "\n", name="private")
    topo.wg(ns, "set", ifname, "private-key", str(key_file))
    shown = topo.wg(ns, "show", ifname, "private-key").stdout.strip()
    assert shown == base64.b64encode(clamped).decode()
    public = topo.wg(ns, "show", ifname, "public-key").stdout.strip()
    expected = topo.wg(ns, "pubkey", input=shown + "\n").stdout.strip()
    assert public == expected
