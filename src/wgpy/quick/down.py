"""`wgpy-quick down` and `wgpy-quick save`, as wg-quick's cmd_down / cmd_save.

`down` runs in a fresh process, so it finds what `up` did from the file and the device, like
wg-quick: PreDown hooks, SaveConfig, the policy-routing rules (when Table is auto and some
AllowedIPs is a default route), the interface itself (its addresses and routes go with it),
DNS, our nftables tables, PostDown hooks.
"""

from __future__ import annotations

import socket

from wgpy.quick import device, dns, firewall, hooks, log
from wgpy.quick.config import QuickConfig, QuickError
from wgpy.quick.interface import delete_interface, is_wireguard_interface
from wgpy.quick.netlink import RT_TABLE_MAIN, Netlink
from wgpy.quick.save import save


def _require_wireguard(netlink: Netlink, ifname: str) -> None:
    if not is_wireguard_interface(netlink, ifname):
        raise QuickError(f"`{ifname}' is not a WireGuard interface")


def down(quick: QuickConfig) -> None:
    ifname = quick.interface
    interface = quick.config.interface
    with Netlink() as netlink:
        _require_wireguard(netlink, ifname)
        hooks.run_hooks("PreDown", interface.pre_down, ifname, quick.path)
        if interface.save_config:
            save(quick, netlink)
        _delete_policy_rules(quick, netlink)
        delete_interface(netlink, ifname)
    if interface.dns_servers:
        dns.unset_dns(ifname)
    firewall.remove(ifname)
    hooks.run_hooks("PostDown", interface.post_down, ifname, quick.path)


def _delete_policy_rules(quick: QuickConfig, netlink: Netlink) -> None:
    if quick.table not in ("", "auto"):
        return
    try:
        state = device.state(quick.interface)
    except QuickError as err:
        # As wg-quick: without the device's fwmark there is no table to clean up; the
        # interface itself must still go.
        log.note(f"{err}; leaving policy routing rules alone")
        return
    has_default = any(n.prefixlen == 0 for peer in state.peers for n in peer.allowed_ips)
    if not state.fwmark or not has_default:
        return
    table = state.fwmark
    for family, ip in ((socket.AF_INET, "ip -4"), (socket.AF_INET6, "ip -6")):
        for rule in netlink.rules(family):
            if rule.table == table:
                log.action(f"{ip} rule delete table {table}")
                netlink.delete_rule(rule)
        for rule in netlink.rules(family):
            if rule.table == RT_TABLE_MAIN and rule.suppress_prefixlength == 0:
                log.action(f"{ip} rule delete table main suppress_prefixlength 0")
                netlink.delete_rule(rule)


def save_running(quick: QuickConfig) -> None:
    with Netlink() as netlink:
        _require_wireguard(netlink, quick.interface)
        save(quick, netlink)
