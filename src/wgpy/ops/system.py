"""What `wgpy doctor` reads from the host (the network namespace it runs in): routes and link
MTUs (pyroute2), forwarding sysctls (/proc/sys), firewall rules (`nft list ruleset`,
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

from wgpy.control.model import IPNetwork

MAIN_TABLE = 254


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


def gather(paths: list[Path]) -> HostView:
    routes, mtus = read_routes()
    view = HostView(
        routes=routes,
        link_mtus=mtus,
        ipv4_forwarding=_as_flag(read_sysctl("net/ipv4/ip_forward")),
        ipv6_forwarding=_as_flag(read_sysctl("net/ipv6/conf/all/forwarding")),
        firewall_text=read_firewall(),
        now=time.time(),
    )
    for path in paths:
        mode = file_mode(path)
        if mode is not None:
            view.file_modes[str(path)] = mode
    return view
