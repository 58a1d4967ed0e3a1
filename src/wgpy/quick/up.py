"""`wgpy-quick up`: the steps of wg-quick's cmd_up, each recording how to undo itself.

Order (as wg-quick): PreUp hooks (the interface does not exist yet), create the interface,
configure the device, addresses, MTU and link up, DNS, routes for every AllowedIPs prefix
(longest first), PostUp hooks. If any step fails — or the user interrupts — everything done so far is undone in reverse order and the
error names the step that failed.

Routes (wg-quick(8), "Table"): with Table = off none are added; with a number they go into that
table; otherwise each prefix goes into the main table, except a default route (/0), which gets
policy routing so the tunnel's own encrypted packets still leave by the normal route:
  - the device marks its UDP packets with FwMark (51820, or the next table number not in use);
  - `ip rule add not fwmark M table M`: unmarked traffic is looked up in table M, which holds
    only the default route into the tunnel;
  - `ip rule add table main suppress_prefixlength 0`: before that, main's specific routes (the
    LAN, the endpoint's route) are still honoured, but not main's default route;
  - net.ipv4.conf.all.src_valid_mark=1 so the reverse-path check considers the mark;
  - nftables rules (see firewall.py).
"""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from wgpy.model import DeviceState, IPNetwork
from wgpy.quick import device, dns, firewall, hooks, log
from wgpy.quick.config import QuickConfig, QuickError, routing_table_number
from wgpy.quick.interface import add_interface, delete_interface
from wgpy.quick.netlink import (
    Netlink,
    RouteInfo,
    family_of,
    read_sysctl,
    write_sysctl,
)

DEFAULT_FWMARK_TABLE = 51820
UNREACHABLE_MTU = 2147483647
FALLBACK_MTU = 1500
WIREGUARD_OVERHEAD = 80  # IPv6 header 40 + UDP 8 + WireGuard 32


class Interrupted(Exception):
    """SIGINT/SIGTERM during `up`: roll back like any other failure."""


class UndoStack:
    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, description: str, undo: Callable[[], None]) -> None:
        self._steps.append((description, undo))

    def unwind(self) -> list[str]:
        """Run every undo step, newest first, past failures; return what could not be undone."""
        problems = []
        while self._steps:
            description, undo = self._steps.pop()
            try:
                undo()
            except Exception as err:  # noqa: BLE001 -- keep undoing the rest
                problems.append(f"{description}: {err}")
        return problems


@contextmanager
def step(description: str) -> Iterator[None]:
    """Turn netlink/OS errors into a QuickError that names the step."""
    try:
        yield
    except NetlinkError as err:
        raise QuickError(f"{description}: {os.strerror(err.code) if err.code else err}") from None
    except OSError as err:
        raise QuickError(f"{description}: {err.strerror or err}") from None


def _ip(version: int) -> str:
    return "ip -6" if version == 6 else "ip -4"


class Up:
    def __init__(self, quick: QuickConfig, netlink: Netlink) -> None:
        self.quick = quick
        self.ifname = quick.interface
        self.netlink = netlink
        self.undo = UndoStack()
        self.fwmark = 0

    def run(self) -> None:
        if self.netlink.link_index(self.ifname) is not None:
            raise QuickError(f"`{self.ifname}' already exists")
        previous = _install_signal_handlers()
        try:
            self._run_steps()
        except (Exception, KeyboardInterrupt, Interrupted) as err:
            log.note("Failed; undoing what was done")
            problems = self.undo.unwind()
            for problem in problems:
                log.note(f"could not undo {problem}")
            if isinstance(err, QuickError):
                raise
            if isinstance(err, (KeyboardInterrupt, Interrupted)):
                raise QuickError("interrupted") from None
            raise QuickError(str(err)) from err
        finally:
            _restore_signal_handlers(previous)

    def _run_steps(self) -> None:
        interface = self.quick.config.interface
        # PreUp runs before the interface exists (wg-quick's cmd_up: hooks, then add_if).
        hooks.run_hooks("PreUp", interface.pre_up, self.ifname, self.quick.path)
        self.undo.push(f"interface {self.ifname}", self._delete_if_present)
        add_interface(self.netlink, self.ifname)
        device.configure(self.ifname, self.quick.config)
        for address in interface.addresses:
            description = f"{_ip(address.version)} address add {address} dev {self.ifname}"
            log.action(description)
            with step(description):
                self.netlink.add_address(self.ifname, address)
        state = device.state(self.ifname)
        self.fwmark = state.fwmark
        self._set_mtu_up(state)
        if interface.dns_servers:
            # Undo first: a resolvconf that failed half-way may still have kept the record.
            self.undo.push("DNS", lambda: dns.unset_dns(self.ifname))
            dns.set_dns(self.ifname, interface.dns_servers, interface.dns_search)
        for network in _routes_to_add(state):
            self._add_route(network)
        hooks.run_hooks("PostUp", interface.post_up, self.ifname, self.quick.path)

    def _delete_if_present(self) -> None:
        if self.netlink.link_index(self.ifname) is not None:
            delete_interface(self.netlink, self.ifname)

    # --- MTU ---------------------------------------------------------------------------------

    def _set_mtu_up(self, state: DeviceState) -> None:
        mtu = self.quick.config.interface.mtu
        if mtu is None:
            mtu = self.automatic_mtu(state)
        description = f"ip link set mtu {mtu} up dev {self.ifname}"
        log.action(description)
        with step(description):
            self.netlink.set_mtu_up(self.ifname, mtu)

    def automatic_mtu(self, state: DeviceState) -> int:
        """The smallest MTU on the way to any endpoint (else of the default route), minus 80."""
        best = UNREACHABLE_MTU
        for peer in state.peers:
            if peer.endpoint is None:
                continue
            host = peer.endpoint[0].split("%", 1)[0]
            route = self.netlink.route_get(ipaddress.ip_address(host))
            mtu = self._route_mtu(route)
            if mtu is not None and mtu < best:
                best = mtu
        if best == UNREACHABLE_MTU:
            mtu = self._route_mtu(self.netlink.default_route())
            if mtu is not None and mtu < best:
                best = mtu
        if not 0 < best < UNREACHABLE_MTU:
            best = FALLBACK_MTU
        return best - WIREGUARD_OVERHEAD

    def _route_mtu(self, route: RouteInfo | None) -> int | None:
        """A route's own MTU metric, else its device's MTU (as wg-quick reads `ip route`)."""
        if route is None:
            return None
        if route.mtu:
            return int(route.mtu)
        if route.oif is None:
            return None
        return self.netlink.link_mtu(route.oif)

    # --- routes ------------------------------------------------------------------------------

    def _add_route(self, network: IPNetwork) -> None:
        table = self.quick.table
        if table == "off":
            return
        if table not in ("", "auto"):
            number = routing_table_number(table)
            description = (
                f"{_ip(network.version)} route add {network} dev {self.ifname} table {number}"
            )
            log.action(description)
            with step(description):
                self.netlink.add_route(network, self.ifname, table=number)
        elif network.prefixlen == 0:
            self._add_default(network)
        elif not self.netlink.link_has_route_covering(self.ifname, network):
            description = f"{_ip(network.version)} route add {network} dev {self.ifname}"
            log.action(description)
            with step(description):
                self.netlink.add_route(network, self.ifname)

    def _add_default(self, network: IPNetwork) -> None:
        if not self.fwmark:
            table = DEFAULT_FWMARK_TABLE
            while self.netlink.table_has_routes(table):
                table += 1
            device.set_fwmark(self.ifname, table)
            self.fwmark = table
        mark = self.fwmark
        family = family_of(network)
        ip = _ip(network.version)

        description = f"{ip} rule add not fwmark {mark} table {mark}"
        log.action(description)
        with step(description):
            self.netlink.add_rule_not_fwmark(family, mark, mark)
        self.undo.push(description, lambda: self._delete_rules(family, mark, suppress=False))

        description = f"{ip} rule add table main suppress_prefixlength 0"
        log.action(description)
        with step(description):
            self.netlink.add_rule_suppress_main(family)
        self.undo.push(description, lambda: self._delete_rules(family, mark, suppress=True))

        description = f"{ip} route add {network} dev {self.ifname} table {mark}"
        log.action(description)
        with step(description):
            self.netlink.add_route(network, self.ifname, table=mark)

        if network.version == 4:
            self._enable_src_valid_mark()
        addresses = self.netlink.addresses(self.ifname, family)
        version = network.version
        self.undo.push(f"IPv{version} firewall", lambda: firewall.remove(self.ifname, version))
        firewall.install(self.ifname, version, mark, addresses)

    def _delete_rules(self, family: int, mark: int, suppress: bool) -> None:
        """Undo one of our two rules (the newest match, which is the one we added)."""
        for rule in self.netlink.rules(family):
            if suppress and rule.table == 254 and rule.suppress_prefixlength == 0:
                self.netlink.delete_rule(rule)
                return
            if not suppress and rule.table == mark and rule.fwmark == mark and rule.invert:
                self.netlink.delete_rule(rule)
                return

    def _enable_src_valid_mark(self) -> None:
        name = "net.ipv4.conf.all.src_valid_mark"
        with step(f"sysctl {name}"):
            before = read_sysctl(name)
            if before == "1":
                return
            log.action(f"sysctl -q {name}=1")
            write_sysctl(name, "1")
        self.undo.push(f"sysctl {name}", lambda: write_sysctl(name, before))


def _routes_to_add(state: DeviceState) -> list[IPNetwork]:
    """Every peer's AllowedIPs, longest prefix first, in wg-quick's order: `sort -nr -k 2 -t /`
    under LC_ALL=C, whose last-resort comparison of whole lines is reversed too (so "::/0"
    comes before "0.0.0.0/0", and the IPv6 nft table is made first)."""
    networks = [network for peer in state.peers for network in peer.allowed_ips]
    return sorted(networks, key=lambda n: (n.prefixlen, str(n).encode()), reverse=True)


def _install_signal_handlers() -> object:
    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupted)
    return previous


def _restore_signal_handlers(previous: object) -> None:
    signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def up(quick: QuickConfig) -> None:
    with Netlink() as netlink:
        Up(quick, netlink).run()


__all__ = ["UndoStack", "Up", "up"]
