"""Netlink for wgpy-quick: links, MTU, addresses, routes, rules and sysctls, via pyroute2.

Everything acts on the network namespace of the calling process (wgpy-quick is run with
`ip netns exec NS ...` in the tests). The requests are shaped like the ones iproute2 sends for the
`ip` commands wg-quick runs, so `ip route show` / `ip rule show` look the same after either tool:
device routes get protocol "boot" and, for IPv4, scope link; rules are added without a priority so
the kernel picks the next free one below the main table's (32765, 32764, ...).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from wgpy.model import IPAddress, IPInterface, IPNetwork

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # what iproute2 puts on routes added by hand
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
FIB_RULE_INVERT = 0x2  # `ip rule add not ...`
IFF_UP = 0x1

__all__ = ["Netlink", "NetlinkError", "RouteInfo", "Rule", "family_of"]


def family_of(net: IPNetwork | IPInterface | IPAddress) -> int:
    return socket.AF_INET6 if net.version == 6 else socket.AF_INET


@dataclass(frozen=True)
class RouteInfo:
    """The answer of a route lookup: the outgoing device and any MTU metric on the route."""

    oif: int | None
    mtu: int | None


@dataclass(frozen=True)
class Rule:
    family: int
    table: int
    priority: int | None
    fwmark: int | None
    invert: bool
    suppress_prefixlength: int | None


class Netlink:
    """A pyroute2 IPRoute socket with the handful of operations wgpy-quick needs."""

    def __init__(self) -> None:
        self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- links -----------------------------------------------------------------------------

    def link_index(self, ifname: str) -> int | None:
        found = self._ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def require_index(self, ifname: str) -> int:
        index = self.link_index(ifname)
        if index is None:
            raise NetlinkError(errno.ENODEV, f'Cannot find device "{ifname}"')
        return index

    def link_kind(self, ifname: str) -> str | None:
        index = self.link_index(ifname)
        if index is None:
            return None
        link = self._ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        return info.get_attr("IFLA_INFO_KIND") if info is not None else None

    def add_wireguard_link(self, ifname: str) -> None:
        """`ip link add dev IFNAME type wireguard`; NetlinkError(EOPNOTSUPP) without the module."""
        self._ipr.link("add", ifname=ifname, kind="wireguard")

    def delete_link(self, ifname: str) -> None:
        self._ipr.link("del", index=self.require_index(ifname))

    def link_mtu(self, index: int) -> int:
        return int(self._ipr.get_links(index)[0].get_attr("IFLA_MTU"))

    def set_mtu_up(self, ifname: str, mtu: int) -> None:
        """`ip link set mtu MTU up dev IFNAME`."""
        index = self.require_index(ifname)
        self._ipr.link("set", index=index, mtu=mtu)
        self._ipr.link("set", index=index, state="up")

    # --- addresses -------------------------------------------------------------------------

    def add_address(self, ifname: str, address: IPInterface) -> None:
        """`ip -4|-6 address add ADDRESS dev IFNAME` (no broadcast, like iproute2's default)."""
        self._ipr.addr(
            "add",
            index=self.require_index(ifname),
            family=family_of(address),
            address=str(address.ip),
            prefixlen=address.network.prefixlen,
        )

    def addresses(self, ifname: str, family: int | None = None) -> list[IPInterface]:
        """Addresses on the link in the kernel's order (as `ip -o addr show dev` lists them)."""
        index = self.link_index(ifname)
        if index is None:
            return []
        result: list[IPInterface] = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            if family is not None and fam != family:
                continue
            for msg in self._ipr.get_addr(index=index, family=fam):
                addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                result.append(ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}"))
        return result

    # --- routes ----------------------------------------------------------------------------

    def add_route(self, destination: IPNetwork, ifname: str, table: int | None = None) -> None:
        """`ip -4|-6 route add DESTINATION dev IFNAME [table TABLE]`."""
        kwargs: dict[str, object] = {
            "dst": str(destination),
            "oif": self.require_index(ifname),
            "family": family_of(destination),
            "proto": RTPROT_BOOT,
            "scope": RT_SCOPE_LINK if destination.version == 4 else RT_SCOPE_UNIVERSE,
        }
        if table is not None:
            kwargs["table"] = table
        self._ipr.route("add", **kwargs)

    def routes(
        self, family: int, table: int = RT_TABLE_MAIN
    ) -> Iterator[tuple[IPNetwork, int | None]]:
        """(destination, output interface index) of every unicast route in TABLE."""
        for msg in self._ipr.get_routes(family=family, table=table):
            if (msg.get_attr("RTA_TABLE") or msg["table"]) != table:
                continue
            dst = msg.get_attr("RTA_DST")
            zero = "0.0.0.0" if family == socket.AF_INET else "::"
            network = ipaddress.ip_network(f"{dst or zero}/{msg['dst_len']}", strict=False)
            yield network, msg.get_attr("RTA_OIF")

    def link_has_route_covering(self, ifname: str, destination: IPNetwork) -> bool:
        """`ip route show dev IFNAME match DESTINATION` is non-empty (main table)."""
        index = self.link_index(ifname)
        for network, oif in self.routes(family_of(destination)):
            same_version = network.version == destination.version
            if oif == index and same_version and destination.subnet_of(network):  # type: ignore[arg-type]
                return True
        return False

    def table_has_routes(self, table: int) -> bool:
        """Is anything in TABLE, IPv4 or IPv6? (`ip -4/-6 route show table TABLE`)."""
        return any(
            True for fam in (socket.AF_INET, socket.AF_INET6) for _ in self.routes(fam, table)
        )

    def route_get(self, address: IPAddress) -> RouteInfo | None:
        """`ip route get ADDRESS`: the device and MTU metric the kernel would use, or None."""
        try:
            msgs = self._ipr.route("get", dst=str(address), family=family_of(address))
        except NetlinkError:
            return None
        if not msgs:
            return None
        return _route_info(msgs[0])

    def default_route(self) -> RouteInfo | None:
        """The first IPv4 default route of the main table (`ip route show default`)."""
        for msg in self._ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN):
            if msg["dst_len"] == 0 and (msg.get_attr("RTA_TABLE") or msg["table"]) == RT_TABLE_MAIN:
                return _route_info(msg)
        return None

    # --- rules -----------------------------------------------------------------------------

    def rules(self, family: int) -> list[Rule]:
        result = []
        for msg in self._ipr.get_rules(family=family):
            suppress = msg.get_attr("FRA_SUPPRESS_PREFIXLEN")
            result.append(
                Rule(
                    family=family,
                    table=msg.get_attr("FRA_TABLE") or msg["table"],
                    priority=msg.get_attr("FRA_PRIORITY"),
                    fwmark=msg.get_attr("FRA_FWMARK"),
                    invert=bool(msg["flags"] & FIB_RULE_INVERT),
                    suppress_prefixlength=None if suppress in (None, 0xFFFFFFFF) else suppress,
                )
            )
        return result

    def add_rule_not_fwmark(self, family: int, mark: int, table: int) -> None:
        """`ip -4|-6 rule add not fwmark MARK table TABLE`."""
        self._ipr.rule(
            "add", family=family, table=table, fwmark=mark, flags=FIB_RULE_INVERT, priority=None
        )

    def add_rule_suppress_main(self, family: int) -> None:
        """`ip -4|-6 rule add table main suppress_prefixlength 0`."""
        self._ipr.rule(
            "add", family=family, table=RT_TABLE_MAIN, suppress_prefixlen=0, priority=None
        )

    def delete_rule(self, rule: Rule) -> None:
        kwargs: dict[str, object] = {"family": rule.family, "table": rule.table}
        kwargs["priority"] = rule.priority
        if rule.fwmark is not None:
            kwargs["fwmark"] = rule.fwmark
        if rule.invert:
            kwargs["flags"] = FIB_RULE_INVERT
        if rule.suppress_prefixlength is not None:
            kwargs["suppress_prefixlen"] = rule.suppress_prefixlength
        self._ipr.rule("del", **kwargs)


def _route_info(msg: object) -> RouteInfo:
    oif = msg.get_attr("RTA_OIF")  # type: ignore[attr-defined]
    mtu = None
    metrics = msg.get_attr("RTA_METRICS")  # type: ignore[attr-defined]
    if metrics is not None:
        mtu = metrics.get_attr("RTAX_MTU")
    return RouteInfo(oif=oif, mtu=mtu)


# --- sysctls (per network namespace under /proc/sys/net) -------------------------------------


def read_sysctl(name: str) -> str:
    return _sysctl_path(name).read_text().strip()


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value + "\n")


def _sysctl_path(name: str) -> Path:
    if not name.startswith("net.") or ".." in name:
        raise ValueError(f"not a network sysctl: {name}")
    return Path("/proc/sys") / name.replace(".", "/")
