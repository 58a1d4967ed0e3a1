"""Text of `wg show` and `wg showconf`, byte for byte as wireguard-tools prints it.

Pure functions of a DeviceState and a `ShowOptions` (clock, colour, key hiding) so the unit
tests can pin every format; `options_from_environment` is the one reader of the clock and of
wg's environment variables. Below the CLI because more than `wgpy show` speaks wg's words: the
operator tools' peer table (ops/peers.py) uses the same handshake age, byte units, endpoint
spelling and peer order. The subcommand drivers (listing, errors) live in cli/wg.py.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from wgpy.keys import key_to_base64, public_key
from wgpy.model import DeviceState, HostPort, IPAddress, IPNetwork, PeerState, join_host_port

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
CYAN = "\x1b[36m"

SHOW_FIELDS = (
    "public-key", "private-key", "listen-port", "fwmark", "peers", "preshared-keys",
    "endpoints", "allowed-ips", "latest-handshakes", "transfer", "persistent-keepalive", "dump",
)


@dataclass
class ShowOptions:
    now: int  # time(NULL) when the command runs
    color: bool = False
    show_keys: bool = False  # WG_HIDE_KEYS=never
    names: dict[bytes, str] | None = None  # `wgpy show --names`: public key -> name


def options_from_environment() -> ShowOptions:
    """As wg decides: now, colour by WG_COLOR_MODE (always / never / when stdout is a
    terminal), keys shown only with WG_HIDE_KEYS=never."""
    mode = os.environ.get("WG_COLOR_MODE")
    if mode == "always":
        color = True
    elif mode == "never":
        color = False
    else:
        color = sys.stdout.isatty()
    return ShowOptions(
        now=int(time.time()), color=color, show_keys=os.environ.get("WG_HIDE_KEYS") == "never"
    )


# -- small formatters ---------------------------------------------------------------------------


def b64(key: bytes) -> str:
    return key_to_base64(key)


def device_public_key(state: DeviceState) -> bytes | None:
    """wg derives the public key from the private key whenever the device has one."""
    if state.private_key is None:
        return None
    return public_key(state.private_key)


def has_preshared_key(peer: PeerState) -> bool:
    return any(peer.preshared_key)


def ntop(address: IPAddress) -> str:
    """inet_ntop's spelling (glibc writes ::ffff:1.2.3.4 and ::1.2.3.4 forms dotted)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return socket.inet_ntop(family, address.packed)


def format_endpoint(endpoint: HostPort) -> str:
    """getnameinfo(NI_NUMERICHOST) then "[host]:port" when the host contains ':'."""
    host, port = endpoint
    bare, percent, zone = host.partition("%")
    try:
        address = ipaddress.ip_address(bare)
        host = ntop(address) + percent + zone
    except ValueError:
        pass
    return join_host_port(host, port)


def format_allowed_ip(network: IPNetwork) -> tuple[str, int]:
    return ntop(network.network_address), network.prefixlen


def pretty_time(seconds: int) -> str:
    years, seconds = divmod(seconds, 365 * 24 * 60 * 60)
    days, seconds = divmod(seconds, 24 * 60 * 60)
    hours, seconds = divmod(seconds, 60 * 60)
    minutes, seconds = divmod(seconds, 60)
    parts = []
    for amount, unit in ((years, "year"), (days, "day"), (hours, "hour"),
                         (minutes, "minute"), (seconds, "second")):
        if amount:
            parts.append(f"{amount} {CYAN}{unit}{'' if amount == 1 else 's'}{RESET}")
    return ", ".join(parts)


def ago(handshake_sec: int, now: int) -> str:
    if now == handshake_sec:
        return "Now"
    if now < handshake_sec:
        return f"({RED}System clock wound backward; connection problems may ensue.{RESET})"
    return pretty_time(now - handshake_sec) + " ago"


def every(seconds: int) -> str:
    return "every " + pretty_time(seconds)


def human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} {CYAN}B{RESET}"
    for limit, divisor, unit in (
        (1024**2, 1024, "KiB"), (1024**3, 1024**2, "MiB"), (1024**4, 1024**3, "GiB"),
    ):
        if count < limit:
            return f"{count / divisor:.2f} {CYAN}{unit}{RESET}"
    return f"{count / 1024**3 / 1024:.2f} {CYAN}TiB{RESET}"


_ANSI = re.compile("\x1b\\[[^A-Za-z]*[A-Za-z]?")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def sorted_peers(peers: list[PeerState]) -> list[PeerState]:
    """wg's pretty-print order: latest handshake first, never-handshaked peers last (stable)."""
    def key(peer: PeerState) -> tuple[bool, int, int]:
        never = peer.last_handshake_sec == 0 and peer.last_handshake_nsec == 0
        return (never, -peer.last_handshake_sec, -peer.last_handshake_nsec)

    return sorted(peers, key=key)


# -- show -----------------------------------------------------------------------------------------


def pretty(name: str, state: DeviceState, options: ShowOptions) -> str:
    """`wg show IFACE`: the human-readable block, coloured if options.color."""
    def masked(key: bytes) -> str:
        return b64(key) if options.show_keys else "(hidden)"

    out = [RESET, f"{GREEN}{BOLD}interface{RESET}: {GREEN}{name}{RESET}\n"]
    pub = device_public_key(state)
    if pub is not None:
        out.append(f"  {BOLD}public key{RESET}: {b64(pub)}\n")
    if state.private_key is not None:
        out.append(f"  {BOLD}private key{RESET}: {masked(state.private_key)}\n")
    if state.listen_port:
        out.append(f"  {BOLD}listening port{RESET}: {state.listen_port}\n")
    if state.fwmark:
        out.append(f"  {BOLD}fwmark{RESET}: 0x{state.fwmark:x}\n")
    peers = sorted_peers(state.peers)
    if peers:
        out.append("\n")
    for index, peer in enumerate(peers):
        label = options.names.get(peer.public_key) if options.names else None
        named = f" ({label})" if label else ""  # wgpy show --names; wg has no names
        out.append(f"{YELLOW}{BOLD}peer{RESET}: {YELLOW}{b64(peer.public_key)}{RESET}{named}\n")
        if has_preshared_key(peer):
            out.append(f"  {BOLD}preshared key{RESET}: {masked(peer.preshared_key)}\n")
        if peer.endpoint is not None:
            out.append(f"  {BOLD}endpoint{RESET}: {format_endpoint(peer.endpoint)}\n")
        out.append(f"  {BOLD}allowed ips{RESET}: ")
        if peer.allowed_ips:
            items = [format_allowed_ip(n) for n in peer.allowed_ips]
            out.append(", ".join(f"{ip}{CYAN}/{RESET}{cidr}" for ip, cidr in items) + "\n")
        else:
            out.append("(none)\n")
        if peer.last_handshake_sec:
            out.append(f"  {BOLD}latest handshake{RESET}: "
                       f"{ago(peer.last_handshake_sec, options.now)}\n")
        if peer.rx_bytes or peer.tx_bytes:
            out.append(f"  {BOLD}transfer{RESET}: {human_bytes(peer.rx_bytes)} received, "
                       f"{human_bytes(peer.tx_bytes)} sent\n")
        if peer.persistent_keepalive:
            out.append(f"  {BOLD}persistent keepalive{RESET}: "
                       f"{every(peer.persistent_keepalive)}\n")
        if index + 1 < len(peers):
            out.append("\n")
    text = "".join(out)
    return text if options.color else strip_ansi(text)


def _maybe_key(key: bytes | None) -> str:
    return "(none)" if key is None else b64(key)


def _psk(peer: PeerState) -> str:
    return b64(peer.preshared_key) if has_preshared_key(peer) else "(none)"


def _endpoint_or_none(peer: PeerState) -> str:
    return format_endpoint(peer.endpoint) if peer.endpoint is not None else "(none)"


def dump(name: str | None, state: DeviceState) -> str:
    """`wg show IFACE dump` (name given = with the interface column, as for `all`)."""
    prefix = f"{name}\t" if name is not None else ""
    fwmark = f"0x{state.fwmark:x}" if state.fwmark else "off"
    lines = [
        (f"{prefix}{_maybe_key(state.private_key)}\t{_maybe_key(device_public_key(state))}\t"
         f"{state.listen_port}\t{fwmark}\n")
    ]
    for peer in state.peers:
        allowed = ",".join(f"{ip}/{cidr}" for ip, cidr in map(format_allowed_ip, peer.allowed_ips))
        keepalive = str(peer.persistent_keepalive) if peer.persistent_keepalive else "off"
        lines.append(
            f"{prefix}{b64(peer.public_key)}\t{_psk(peer)}\t{_endpoint_or_none(peer)}\t"
            f"{allowed or '(none)'}\t{peer.last_handshake_sec}\t{peer.rx_bytes}\t"
            f"{peer.tx_bytes}\t{keepalive}\n"
        )
    return "".join(lines)


def field(name: str | None, state: DeviceState, param: str) -> str | None:
    """`wg show IFACE <param>`: tab-separated text, or None for an unknown param."""
    prefix = f"{name}\t" if name is not None else ""
    if param == "public-key":
        return f"{prefix}{_maybe_key(device_public_key(state))}\n"
    if param == "private-key":
        return f"{prefix}{_maybe_key(state.private_key)}\n"
    if param == "listen-port":
        return f"{prefix}{state.listen_port}\n"
    if param == "fwmark":
        return f"{prefix}{f'0x{state.fwmark:x}' if state.fwmark else 'off'}\n"
    if param == "endpoints":
        # wireguard-tools v1.0.20210914 prints the interface column once, before the first
        # peer (fixed upstream later); kept for byte-identical output with that wg.
        lines = [f"{b64(p.public_key)}\t{_endpoint_or_none(p)}\n" for p in state.peers]
        return prefix + "".join(lines)
    per_peer = {
        "allowed-ips": lambda p: " ".join(
            f"{ip}/{cidr}" for ip, cidr in map(format_allowed_ip, p.allowed_ips)) or "(none)",
        "latest-handshakes": lambda p: str(p.last_handshake_sec),
        "transfer": lambda p: f"{p.rx_bytes}\t{p.tx_bytes}",
        "persistent-keepalive": lambda p: (
            str(p.persistent_keepalive) if p.persistent_keepalive else "off"),
        "preshared-keys": _psk,
    }
    if param in per_peer:
        render = per_peer[param]
        return "".join(f"{prefix}{b64(p.public_key)}\t{render(p)}\n" for p in state.peers)
    if param == "peers":
        return "".join(f"{prefix}{b64(p.public_key)}\n" for p in state.peers)
    if param == "dump":
        return dump(name, state)
    return None


# -- showconf -------------------------------------------------------------------------------------


def showconf(state: DeviceState) -> str:
    out = ["[Interface]\n"]
    if state.listen_port:
        out.append(f"ListenPort = {state.listen_port}\n")
    if state.fwmark:
        out.append(f"FwMark = 0x{state.fwmark:x}\n")
    if state.private_key is not None:
        out.append(f"PrivateKey = {b64(state.private_key)}\n")
    out.append("\n")
    for index, peer in enumerate(state.peers):
        out.append(f"[Peer]\nPublicKey = {b64(peer.public_key)}\n")
        if has_preshared_key(peer):
            out.append(f"PresharedKey = {b64(peer.preshared_key)}\n")
        if peer.allowed_ips:
            items = [f"{ip}/{cidr}" for ip, cidr in map(format_allowed_ip, peer.allowed_ips)]
            out.append("AllowedIPs = " + ", ".join(items) + "\n")
        if peer.endpoint is not None:
            out.append(f"Endpoint = {format_endpoint(peer.endpoint)}\n")
        if peer.persistent_keepalive:
            out.append(f"PersistentKeepalive = {peer.persistent_keepalive}\n")
        if index + 1 < len(state.peers):
            out.append("\n")
    return "".join(out)


# -- JSON (wgpy only) -----------------------------------------------------------------------------


def to_json(name: str, state: DeviceState, show_keys: bool,
            drops: dict[str, int] | None = None,
            names: dict[bytes, str] | None = None) -> dict[str, Any]:
    """One interface as the documented JSON object (README "JSON output"); "drops" (packets
    dropped, by reason) only when the daemon reports them (wgpy-daemon); each peer's "name"
    (null when unknown) when names are given."""
    def secret(key: bytes | None) -> str | None:
        if key is None:
            return None
        return b64(key) if show_keys else "(hidden)"

    pub = device_public_key(state)
    document: dict[str, Any] = {
        "name": name,
        "public_key": b64(pub) if pub is not None else None,
        "private_key": secret(state.private_key),
        "listen_port": state.listen_port,
        "fwmark": state.fwmark or None,
        "peers": [
            {
                "public_key": b64(peer.public_key),
                "preshared_key": secret(peer.preshared_key) if has_preshared_key(peer) else None,
                "endpoint": format_endpoint(peer.endpoint) if peer.endpoint else None,
                "allowed_ips": [f"{ip}/{cidr}"
                                for ip, cidr in map(format_allowed_ip, peer.allowed_ips)],
                "latest_handshake": peer.last_handshake_sec,
                "latest_handshake_nsec": peer.last_handshake_nsec,
                "rx_bytes": peer.rx_bytes,
                "tx_bytes": peer.tx_bytes,
                "persistent_keepalive": peer.persistent_keepalive or None,
                "protocol_version": peer.protocol_version,
            }
            for peer in sorted_peers(state.peers)
        ],
    }
    if names is not None:
        for peer, entry in zip(sorted_peers(state.peers), document["peers"], strict=True):
            entry["name"] = names.get(peer.public_key)
    if drops is not None:
        document["drops"] = dict(sorted(drops.items()))
    return document
