"""What `wgpy doctor` reads from the host (the network namespace it runs in): routes and link
MTUs (pyroute2), the kernel's own route lookups for the packets doctor asks about (pyroute2's
`route("get")`, i.e. `ip route get`), forwarding sysctls (/proc/sys), firewall rules (`nft list ruleset`,
`iptables-save`, `ip6tables-save` output, read only), file modes, and the interface itself.

Everything is gathered into one `HostView`, so the checks in doctor.py are pure functions that
unit tests feed directly.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgpy.model import IPNetwork

MAIN_TABLE = 254
RTN_UNICAST = 1
# An internet address to ask the kernel about: "where would a client's packet to the internet
# leave?" A route lookup only; nothing is ever sent to it.
INTERNET_PROBE = {4: "1.1.1.1", 6: "2606:4700:4700::1111"}


@dataclass
class RouteProbes:
    """The lookups doctor wants answered: `sources` are clients' tunnel addresses (a packet
    from each, arriving on `ifname`, to INTERNET_PROBE), `destinations` addresses inside peers'
    AllowedIPs (a packet this host sends to each)."""

    ifname: str | None = None
    sources: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)


@dataclass
class Route:
    destination: IPNetwork
    device: str | None
    gateway: str | None = None


@dataclass
class HostView:
    routes: list[Route] = field(default_factory=list)
    link_mtus: dict[str, int] = field(default_factory=dict)
    ipv4_forwarding: bool | None = None
    ipv6_forwarding: bool | None = None
    firewall_text: str | None = None  # None: no tool could be read
    file_modes: dict[str, int] = field(default_factory=dict)  # path -> st_mode & 0o777
    now: float = 0.0
    # client source address -> the device its internet-bound packet leaves by (None: no route)
    egress: dict[str, str | None] = field(default_factory=dict)
    # destination address -> the device this host's packet to it leaves by (None: no route)
    route_devices: dict[str, str | None] = field(default_factory=dict)

    def default_route_device(self, version: int = 4) -> str | None:
        for route in self.routes:
            if route.destination.prefixlen == 0 and route.destination.version == version:
                return route.device
        return None


def read_sysctl(path: str) -> str | None:
    try:
        return Path("/proc/sys", path).read_text().strip()
    except OSError:
        return None


def _as_flag(text: str | None) -> bool | None:
    return None if text is None else text != "0"


def read_routes() -> tuple[list[Route], dict[str, int]]:
    """Main-table unicast routes of this namespace and every link's MTU."""
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

    routes: list[Route] = []
    mtus: dict[str, int] = {}
    with IPRoute() as ipr:
        names: dict[int, str] = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            mtu = link.get_attr("IFLA_MTU")
            if mtu is not None:
                mtus[name] = int(mtu)
        for family in (socket.AF_INET, socket.AF_INET6):
            for message in ipr.get_routes(family=family, table=MAIN_TABLE):
                if message["type"] != 1:  # RTN_UNICAST only (no local/broadcast/unreachable)
                    continue
                zero = "0.0.0.0" if family == socket.AF_INET else "::"
                destination = message.get_attr("RTA_DST") or zero
                network = ipaddress.ip_network(f"{destination}/{message['dst_len']}", strict=False)
                oif = message.get_attr("RTA_OIF")
                routes.append(Route(network, names.get(oif) if oif else None,
                                    message.get_attr("RTA_GATEWAY")))
    return routes, mtus


def _route_device(ipr: Any, names: dict[int, str], **query: Any) -> str | None:
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    try:
        answer = ipr.route("get", **query)
    except (NetlinkError, OSError):
        return None
    if not answer or answer[0]["type"] != RTN_UNICAST:
        return None
    oif = answer[0].get_attr("RTA_OIF")
    return names.get(oif) if oif else None


def lookup_routes(probes: RouteProbes) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The kernel's answers to probes: (egress by client source, device by destination).

    A client's packet is looked up as forwarded traffic (`ip route get INTERNET from CLIENT iif
    WG`), which is what the kernel does with it; that lookup needs forwarding on, so when it
    fails the answer is where this host's own packet to the internet would go.
    """
    from pyroute2 import IPRoute

    egress: dict[str, str | None] = {}
    devices: dict[str, str | None] = {}
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        index = next((i for i, n in names.items() if n == probes.ifname), None)
        for source in probes.sources:
            version = ipaddress.ip_address(source).version
            target = INTERNET_PROBE[version]
            device = None
            if index is not None:
                device = _route_device(ipr, names, dst=target, src=source, iif=index)
            if device is None:
                device = _route_device(ipr, names, dst=target)
            egress[source] = device
        for destination in probes.destinations:
            devices[destination] = _route_device(ipr, names, dst=destination)
    return egress, devices


def read_firewall() -> str | None:
    """The concatenated rule dumps of the tools present; None if none could be read."""
    texts: list[str] = []
    for argv in (["nft", "list", "ruleset"], ["iptables-save"], ["ip6tables-save"]):
        if shutil.which(argv[0]) is None:
            continue
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            texts.append(f"### {' '.join(argv)}\n{result.stdout}")
    return "\n".join(texts) if texts else None


def file_mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return None


def gather(paths: list[Path], probes: RouteProbes | None = None) -> HostView:
    routes, mtus = read_routes()
    egress, devices = lookup_routes(probes) if probes is not None else ({}, {})
    view = HostView(
        routes=routes,
        link_mtus=mtus,
        ipv4_forwarding=_as_flag(read_sysctl("net/ipv4/ip_forward")),
        ipv6_forwarding=_as_flag(read_sysctl("net/ipv6/conf/all/forwarding")),
        firewall_text=read_firewall(),
        now=time.time(),
        egress=egress,
        route_devices=devices,
    )
    for path in paths:
        mode = file_mode(path)
        if mode is not None:
            view.file_modes[str(path)] = mode
    return view
