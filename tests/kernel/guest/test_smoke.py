"""The VM itself: the kernel module loads and a kernel WireGuard link comes up in a namespace."""

from __future__ import annotations

from netns import Topology


def test_kernel_link_in_namespace(mtopo: Topology) -> None:
    ns = mtopo.netns("k")
    ifname = mtopo.ifname("k")
    ns.run(["ip", "link", "add", ifname, "type", "wireguard"])
    mtopo.links.append((ns, ifname))
    assert mtopo.wg(ns, "show", ifname).stdout.startswith(f"interface: {ifname}\n")
