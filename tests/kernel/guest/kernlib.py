"""Shared pieces of the guest tests: a kernel WireGuard link and a wgpy-daemon in namespaces."""

from __future__ import annotations

import sys
import time
from typing import Any

from netns import Netns, Topology, WgDump

# Under emulation (TCG) a Python start takes 10-30 s; the harness's 10 s default is for hosts.
DAEMON_START_TIMEOUT = 300.0


def add_kernel_link(topo: Topology, ns: Netns, tag: str = "k") -> str:
    """A `type wireguard` link in ns, removed with the topology."""
    ifname = topo.ifname(tag)
    ns.run(["ip", "link", "add", ifname, "type", "wireguard"])
    topo.links.append((ns, ifname))
    return ifname


def start_wgpy(topo: Topology, ns: Netns, tag: str = "p") -> tuple[str, Any]:
    ifname = topo.ifname(tag)
    process = topo.start_userspace(
        ns, ifname, [sys.executable, "-m", "wgpy.cli.daemon", "-f"],
        timeout=DAEMON_START_TIMEOUT,
    )
    return ifname, process


def handshake_after(topo: Topology, ns: Netns, ifname: str, since: float,
                    timeout: float = 30) -> WgDump:
    """Wait until every peer of ifname has a handshake at or after `since` (unix seconds)."""

    def done() -> WgDump | None:
        dump = topo.wg_dump(ns, ifname)
        peers = dump.peers.values()
        return dump if peers and all(p.latest_handshake >= int(since) for p in peers) else None

    return topo.wait_for(done, timeout=timeout, interval=0.3,
                         message=lambda: f"a handshake on {ifname} after {since:.0f}:\n"
                         + topo.wg(ns, "show", ifname).stdout)


def now() -> float:
    return time.time()
