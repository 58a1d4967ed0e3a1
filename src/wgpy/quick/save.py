"""`wgpy-quick save` (and SaveConfig = true on `down`): write the running state back.

The file becomes wg-quick's own keys first (addresses now on the link, DNS servers resolvconf
holds, MTU when the file set one, Table, SaveConfig, the hooks), then what `wg showconf` prints
for the device. It is written to a 0600 temporary file beside the original, synced, and renamed
over it, so a crash never leaves half a file.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from wgpy.conf.writer import write_config_file
from wgpy.control.model import DeviceState
from wgpy.control.netlink import Netlink
from wgpy.keys import is_zero, key_to_base64
from wgpy.quick import device, dns, log
from wgpy.quick.config import QuickConfig, QuickError

LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


def format_showconf(state: DeviceState) -> str:
    """The text `wg showconf` prints for a device."""
    out = ["[Interface]\n"]
    if state.listen_port:
        out.append(f"ListenPort = {state.listen_port}\n")
    if state.fwmark:
        out.append(f"FwMark = 0x{state.fwmark:x}\n")
    if state.private_key is not None and not is_zero(state.private_key):
        out.append(f"PrivateKey = {key_to_base64(state.private_key)}\n")
    out.append("\n")
    for index, peer in enumerate(state.peers):
        out.append(f"[Peer]\nPublicKey = {key_to_base64(peer.public_key)}\n")
        if not is_zero(peer.preshared_key):
            out.append(f"PresharedKey = {key_to_base64(peer.preshared_key)}\n")
        if peer.allowed_ips:
            out.append(f"AllowedIPs = {', '.join(str(n) for n in peer.allowed_ips)}\n")
        if peer.endpoint is not None:
            host, port = peer.endpoint
            shown = f"[{host}]" if ":" in host else host
            out.append(f"Endpoint = {shown}:{port}\n")
        if peer.persistent_keepalive:
            out.append(f"PersistentKeepalive = {peer.persistent_keepalive}\n")
        if index != len(state.peers) - 1:
            out.append("\n")
    return "".join(out)


def quick_interface_lines(quick: QuickConfig, netlink: Netlink) -> list[str]:
    interface = quick.config.interface
    ifname = quick.interface
    lines = []
    for address in netlink.addresses(ifname):
        # The kernel's own IPv6 link-local address would come back as a second one on `up`.
        if address.version == 6 and address.ip in LINK_LOCAL_V6:
            continue
        lines.append(f"Address = {address}")
    # What resolvconf holds for us (as wg-quick reads it back); a resolvconf that cannot list
    # records (-l) would otherwise make `save` silently drop the servers, so fall back to the
    # file's, which is what `up` gave it.
    servers = dns.current_servers(ifname) if interface.dns_servers else []
    lines += [f"DNS = {server}" for server in servers or interface.dns_servers]
    if interface.dns_search and interface.dns_servers:
        lines.append(f"DNS = {', '.join(interface.dns_search)}")
    index = netlink.link_index(ifname)
    if interface.mtu is not None and index is not None:
        lines.append(f"MTU = {netlink.link_mtu(index)}")
    if quick.table:
        lines.append(f"Table = {quick.table}")
    if interface.save_config:
        lines.append("SaveConfig = true")
    for key, hooks in (
        ("PreUp", interface.pre_up),
        ("PostUp", interface.post_up),
        ("PreDown", interface.pre_down),
        ("PostDown", interface.post_down),
    ):
        lines += [f"{key} = {hook}" for hook in hooks]
    return lines


def saved_text(quick: QuickConfig, netlink: Netlink) -> str:
    showconf = format_showconf(device.state(quick.interface))
    header, _, body = showconf.partition("\n")
    assert header == "[Interface]"
    quick_lines = "".join(line + "\n" for line in quick_interface_lines(quick, netlink))
    # wg-quick substitutes into `$(wg showconf)` (trailing newlines dropped) and echoes it.
    return f"[Interface]\n{quick_lines}{body}".rstrip("\n") + "\n"


def save(quick: QuickConfig, netlink: Netlink) -> None:
    log.action(f"wgpy showconf {quick.interface}")
    text = saved_text(quick, netlink)
    write_private_file(quick.path, text)


def write_private_file(path: Path, text: str) -> None:
    try:
        write_config_file(path, text)
    except OSError as err:
        raise QuickError(f"Could not write configuration file: {err.strerror}") from None
