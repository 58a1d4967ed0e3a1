"""`wgpy-quick save` (and SaveConfig = true on `down`): merge the running state into the file.

wg-quick's own save rewrites the file from `wg showconf`, which loses every comment (peer
names, `# wgpy: Endpoint`), blank line and the operator's layout, and mangles `&` in hooks.
We merge instead (conf.writer.format_config does the line work):

- a peer still running keeps its section byte for byte; a value that changed (AllowedIPs as a
  set, PresharedKey, PersistentKeepalive, Endpoint) is rewritten on its own line;
- a peer added at runtime is appended; a peer no longer running is deleted
  (conf.writer.without_peers: comments after its last key, e.g. a commented-out peer, stay);
- a peer disabled in the file (disable-peer, conf/disabled.py) stays as it is, also when it
  was put back on the interface by hand;
- [Interface]: PrivateKey, ListenPort and FwMark from the device, Address from the link, DNS
  servers from resolvconf, MTU from the link when the file sets one; Table, SaveConfig and the
  hooks are never rewritten. FwMark is saved also when `up` chose it for a default route, as
  wg-quick's save does (it writes `wg showconf`).
  An Endpoint written as a host name stays as written while its port matches.

Unchanged running state gives back the same bytes. The file is written to a 0600 temporary
file beside the original, synced, and renamed over it, so a crash never leaves half a file.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from wgpy.conf import Config, ConfigError, PeerSection, format_config, parse_config, values
from wgpy.conf.disabled import find_disabled_peers
from wgpy.conf.writer import without_peers, write_config_file
from wgpy.keys import is_zero
from wgpy.model import DeviceState, HostPort, IPInterface, PeerState, join_host_port
from wgpy.quick import device, dns, log
from wgpy.quick.config import QuickConfig, QuickError
from wgpy.quick.netlink import Netlink

LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


@dataclass
class Running:
    """What `save` reads from the running system, beside the device itself."""

    device: DeviceState
    addresses: list[IPInterface]
    dns_servers: list[str] | None = None  # None: the file has no DNS servers to compare
    mtu: int | None = None  # None: the file sets no MTU (then none is saved, as wg-quick)


def read_running(quick: QuickConfig, netlink: Netlink) -> Running:
    ifname = quick.interface
    interface = quick.config.interface
    # The kernel's own IPv6 link-local address would come back as a second one on `up`.
    addresses = [
        a for a in netlink.addresses(ifname) if not (a.version == 6 and a.ip in LINK_LOCAL_V6)
    ]
    servers = None
    if interface.dns_servers:
        # What resolvconf holds for us (as wg-quick reads it back); a resolvconf that cannot
        # list records (-l) would otherwise make `save` drop the servers: keep the file's.
        servers = dns.current_servers(ifname) or list(interface.dns_servers)
    mtu = None
    index = netlink.link_index(ifname)
    if interface.mtu is not None and index is not None:
        mtu = netlink.link_mtu(index)
    return Running(device.state(ifname), addresses, servers, mtu)


def merged_text(text: str, config: Config, running: Running) -> str:
    """The file text with the running state merged in (see the module doc)."""
    state = running.device
    # A peer disabled in the file (disable-peer) stays disabled even if someone put it back
    # by hand: the file says so, and syncconf of the file would take it off again.
    try:
        disabled = {d.section.public_key
                    for d in find_disabled_peers(text.split("\n"), config.path)}
    except ConfigError:
        disabled = set()  # a marked block that does not parse is only comments to wg-quick
    live_keys = {peer.public_key for peer in state.peers}
    gone = [peer for peer in config.peers if peer.public_key not in live_keys]
    if gone:
        text = without_peers(text, gone)
        config = parse_config(text, config.path, quick=True)
    _merge_interface(config, running)
    by_key = {peer.public_key: peer for peer in config.peers}
    for live in state.peers:
        section = by_key.get(live.public_key)
        if section is None and live.public_key in disabled:
            continue
        if section is None:
            section = PeerSection(public_key=live.public_key)
            config.peers.append(section)
            by_key[live.public_key] = section
        _merge_peer(section, live)
    merged = format_config(config)
    # A file without a final newline keeps it that way when its last line is still last.
    if text and not text.endswith("\n"):
        last_line = text.rsplit("\n", 1)[-1]
        if merged == f"{last_line}\n" or merged.endswith(f"\n{last_line}\n"):
            merged = merged[:-1]
    return merged


def _merge_interface(config: Config, running: Running) -> None:
    section = config.interface
    state = running.device
    private_key = state.private_key
    if private_key is not None and not is_zero(private_key) and (
            section.private_key is None
            or not hmac.compare_digest(private_key, section.private_key)):
        section.private_key = private_key
    if state.listen_port and state.listen_port != section.listen_port:
        section.listen_port = state.listen_port
    if state.fwmark != (section.fwmark or 0):
        # Also the mark `up` set itself for a default route (Table auto): wg-quick's save
        # writes `wg showconf`, which shows it, and the next `up` keeps a mark already set.
        section.fwmark = state.fwmark if state.fwmark or section.fwmark else None
    if set(running.addresses) != set(section.addresses):
        section.addresses = list(running.addresses)
    if running.dns_servers is not None and set(running.dns_servers) != set(section.dns_servers):
        section.dns_servers = list(running.dns_servers)
    if running.mtu is not None:
        section.mtu = running.mtu


def _merge_peer(section: PeerSection, live: PeerState) -> None:
    psk = None if is_zero(live.preshared_key) else live.preshared_key
    written = section.preshared_key
    if psk is None or written is None or not hmac.compare_digest(psk, written):
        section.preshared_key = psk
    if set(live.allowed_ips) != set(section.allowed_ips):
        section.allowed_ips = list(live.allowed_ips)
    if live.endpoint is not None and not _same_endpoint(section.endpoint, live.endpoint):
        section.endpoint = join_host_port(*live.endpoint)
    if live.persistent_keepalive != (section.persistent_keepalive or 0):
        section.persistent_keepalive = live.persistent_keepalive or None


def _same_endpoint(written: str | None, live: HostPort) -> bool:
    """Whether the file's Endpoint is the one running. A host name stays as written when its
    port matches (the device holds what it resolved to; the name is what the operator meant)."""
    if written is None:
        return False
    try:
        host, port = values.split_endpoint(written)
    except ValueError:
        return False
    if not port.isdigit() or int(port) != live[1]:
        return False
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(live[0].split("%", 1)[0])
    except ValueError:
        return True  # a name


def save(quick: QuickConfig, netlink: Netlink) -> None:
    log.action(f"wgpy showconf {quick.interface}")
    text = merged_text(quick.text, quick.config, read_running(quick, netlink))
    write_private_file(quick.path, text)


def write_private_file(path: Path, text: str) -> None:
    try:
        write_config_file(path, text)
    except ConfigError as err:
        raise QuickError(f"Could not write configuration file: {err}") from None
    except OSError as err:
        raise QuickError(f"Could not write configuration file {path}: {err.strerror}") from None
