"""Peers by name: `wgpy peers` (a table of the peers, live and configured), the names beside
the keys in `wgpy show --names`, and `disable-peer` / `enable-peer`.

A peer's name is its `# friendly_name = NAME` comment (serverconf.peer_name). A disabled peer
stays in the config, commented out line by line with the `#disabled# ` marker
(conf/disabled.py), so wg-quick, wgpy-quick, `wg-quick strip` and `wg syncconf` all leave it
out; it is removed from the running interface. Enabling takes the marker away (the file is then
byte for byte what it was before disable) and adds the peer to the running interface with the
settings of its section. Both edits touch only the peer's own lines, are parsed again before
they are written, and are written by the one atomic 0600 config writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgpy import show as fmt
from wgpy.conf import ConfigError, PeerSection, values
from wgpy.conf.disabled import DisabledPeer, disable_lines, enable_line, find_disabled_peers
from wgpy.conf.request import peer_set
from wgpy.control.client import DeviceControl
from wgpy.model import DeviceState, IPNetwork, PeerSet, PeerState, SetRequest
from wgpy.ops import serverconf
from wgpy.ops.addpeer import OpsError, live_state, load_server
from wgpy.ops.serverconf import ServerConfig, peer_name

ENABLED = "enabled"
DISABLED = "disabled"


@dataclass
class PeerRow:
    public_key: bytes
    name: str | None = None
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    endpoint: str | None = None
    latest_handshake: int = 0  # unix seconds, 0 = never
    rx_bytes: int = 0
    tx_bytes: int = 0
    status: str = ENABLED
    live: bool = False
    in_config: bool = False

    @property
    def label(self) -> str:
        return self.name or fmt.b64(self.public_key)


def disabled_peers(server: ServerConfig) -> list[DisabledPeer]:
    try:
        return find_disabled_peers(server.lines, str(server.path))
    except ConfigError as err:
        raise OpsError(f"cannot parse a disabled peer: {err}") from None


def names(server: ServerConfig | None) -> dict[bytes, str]:
    """public key -> name, for the peers of the config, disabled ones included."""
    if server is None:
        return {}
    found: dict[bytes, str] = {}
    sections = [*server.config.peers, *(d.section for d in disabled_peers(server))]
    for section in sections:
        name = peer_name(section)
        if name:
            found.setdefault(section.public_key, name)
    return found


def config_names(config_path: Path) -> dict[bytes, str]:
    """Names from the config at config_path; empty when it is missing or cannot be read."""
    try:
        return names(serverconf.load(config_path))
    except (OSError, ConfigError, OpsError):
        return {}


def rows(server: ServerConfig | None, live: DeviceState | None) -> list[PeerRow]:
    """One row per peer: the running ones in `wg show`'s order, then configured peers that are
    not running, then disabled ones, in file order."""
    configured: dict[bytes, PeerSection] = {}
    for section in server.config.peers if server is not None else []:
        configured.setdefault(section.public_key, section)
    disabled = disabled_peers(server) if server is not None else []
    result: list[PeerRow] = []
    for state in fmt.sorted_peers(live.peers) if live is not None else []:
        section = configured.pop(state.public_key, None)
        result.append(_live_row(state, section))
    for section in configured.values():
        result.append(_config_row(section, ENABLED))
    for entry in disabled:
        if any(row.public_key == entry.section.public_key for row in result):
            continue  # disabled in the file but running anyway: its live row says more
        result.append(_config_row(entry.section, DISABLED))
    return result


def _live_row(state: PeerState, section: PeerSection | None) -> PeerRow:
    return PeerRow(
        public_key=state.public_key,
        name=peer_name(section) if section is not None else None,
        allowed_ips=list(state.allowed_ips),
        endpoint=fmt.format_endpoint(state.endpoint) if state.endpoint is not None else None,
        latest_handshake=state.last_handshake_sec,
        rx_bytes=state.rx_bytes, tx_bytes=state.tx_bytes,
        status=ENABLED, live=True, in_config=section is not None,
    )


def _config_row(section: PeerSection, status: str) -> PeerRow:
    return PeerRow(public_key=section.public_key, name=peer_name(section),
                   allowed_ips=list(section.allowed_ips), endpoint=section.endpoint,
                   status=status, in_config=True)


def handshake_text(row: PeerRow, now: int) -> str:
    """wg show's wording ("2 minutes, 3 seconds ago", "Now"), uncoloured; "never"."""
    if not row.latest_handshake:
        return "never"
    return fmt.strip_ansi(fmt.ago(row.latest_handshake, now))


def transfer_text(row: PeerRow) -> str:
    if not row.live:
        return "-"
    return fmt.strip_ansi(f"{fmt.human_bytes(row.rx_bytes)} received, "
                          f"{fmt.human_bytes(row.tx_bytes)} sent")


def state_text(row: PeerRow, running: bool) -> str:
    if row.status == DISABLED:
        return DISABLED
    if not row.in_config:
        return f"{ENABLED} (running only, not in the config)"
    if running and not row.live:
        return f"{ENABLED} (in the config, not running)"
    return ENABLED


def format_table(table: list[PeerRow], now: int, running: bool) -> str:
    """One line per peer, columns aligned: name, addresses, endpoint, handshake, transfer,
    state. fmt.ago gives wg show's wording ("2 minutes, 3 seconds ago")."""
    header = ["NAME", "ADDRESSES", "ENDPOINT", "LATEST HANDSHAKE", "TRANSFER", "STATE"]
    lines = [header] + [[
        row.label,
        ", ".join(str(n) for n in row.allowed_ips) or "(none)",
        row.endpoint or "(none)",
        handshake_text(row, now),
        transfer_text(row),
        state_text(row, running),
    ] for row in table]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  " + line[-1] + "\n"
        for line in lines
    )


def as_json(row: PeerRow, now: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "public_key": fmt.b64(row.public_key),
        "allowed_ips": [str(n) for n in row.allowed_ips],
        "endpoint": row.endpoint,
        "latest_handshake": row.latest_handshake,
        "latest_handshake_ago": handshake_text(row, now),
        "rx_bytes": row.rx_bytes,
        "tx_bytes": row.tx_bytes,
        "enabled": row.status == ENABLED,
        "running": row.live,
        "in_config": row.in_config,
    }


# -- disable / enable -----------------------------------------------------------------------------


@dataclass
class ToggleResult:
    public_key: bytes
    name: str | None
    live: bool  # the running interface was changed
    changed: bool  # the config was changed (False: it already was so)


def _matches(section: PeerSection, name_or_key: str) -> bool:
    key = serverconf.as_key(name_or_key)
    if key is not None and section.public_key == key:
        return True
    return (peer_name(section) or "").casefold() == name_or_key.casefold()


def disable_peer(ifname: str, name_or_key: str, config_path: Path,
                 control: DeviceControl) -> ToggleResult:
    with serverconf.locked(config_path):
        server = load_server(config_path)
        live = live_state(control, ifname)
        section = next((p for p in server.config.peers if _matches(p, name_or_key)), None)
        if section is None:
            already = next((d for d in disabled_peers(server)
                            if _matches(d.section, name_or_key)), None)
            if already is None:
                raise OpsError(f"no peer {name_or_key!r} in {server.path}")
            # already disabled: make sure it is not running either
            return ToggleResult(already.section.public_key, peer_name(already.section),
                                _remove_live(control, ifname, live, already.section.public_key),
                                changed=False)
        # from its first line (the comments right above [Peer] are its own) to its last key
        # line: comments and blank lines after it may be about what follows
        first = section.source[0].number - 1
        last = max(line.number for line in section.source
                   if line.key is not None or line.number == section.line)
        lines = server.lines
        lines[first:last] = disable_lines(lines[first:last])
        new_text = "".join(line + "\n" for line in lines)
        edited = serverconf.reparse(server, new_text)
        if any(p.public_key == section.public_key for p in edited.config.peers):
            raise OpsError(f"{server.path}: another [Peer] with the same PublicKey as "
                           f"{name_or_key!r} is still enabled; merge them first")
        serverconf.write_private(server.path, new_text)
        try:
            changed_live = _remove_live(control, ifname, live, section.public_key)
        except OpsError:
            serverconf.write_private(server.path, server.text)
            raise
        return ToggleResult(section.public_key, peer_name(section), changed_live, changed=True)


def _remove_live(control: DeviceControl, ifname: str, live: DeviceState | None,
                 public_key: bytes) -> bool:
    if live is None or not any(p.public_key == public_key for p in live.peers):
        return False
    try:
        control.set(ifname, SetRequest(peers=[PeerSet(public_key=public_key, remove=True)]))
    except OSError as err:
        raise OpsError(f"{ifname}: could not change the running interface: "
                       f"{err.strerror or err}") from None
    return True


def enable_peer(ifname: str, name_or_key: str, config_path: Path,
                control: DeviceControl) -> ToggleResult:
    with serverconf.locked(config_path):
        server = load_server(config_path)
        live = live_state(control, ifname)
        entry = next((d for d in disabled_peers(server) if _matches(d.section, name_or_key)), None)
        if entry is None:
            section = next((p for p in server.config.peers if _matches(p, name_or_key)), None)
            if section is None:
                raise OpsError(f"no peer {name_or_key!r} in {server.path}")
            return ToggleResult(section.public_key, peer_name(section),
                                _add_live(control, ifname, live, section), changed=False)
        lines = server.lines
        for number in entry.numbers:
            lines[number - 1] = enable_line(lines[number - 1])
        new_text = "".join(line + "\n" for line in lines)
        edited = serverconf.reparse(server, new_text)
        section = next(p for p in edited.config.peers if p.public_key == entry.section.public_key)
        serverconf.write_private(server.path, new_text)
        try:
            changed_live = _add_live(control, ifname, live, section)
        except OpsError:
            serverconf.write_private(server.path, server.text)
            raise
        return ToggleResult(section.public_key, peer_name(section), changed_live, changed=True)


def _add_live(control: DeviceControl, ifname: str, live: DeviceState | None,
              section: PeerSection) -> bool:
    if live is None or any(p.public_key == section.public_key for p in live.peers):
        return False
    endpoint = None
    if section.endpoint:
        try:
            endpoint = values.resolve_endpoint(section.endpoint)
        except ValueError as err:
            raise OpsError(f"Endpoint {section.endpoint!r}: {err}") from None
    try:
        control.set(ifname, SetRequest(peers=[peer_set(section, endpoint)]))
    except OSError as err:
        raise OpsError(f"{ifname}: could not change the running interface: "
                       f"{err.strerror or err}") from None
    return True
