"""The wg / wg-quick configuration format, read line by line like wireguard-tools' config.c.

Theory of operation: each physical line is cleaned the way wg cleans it (everything after the
first '#' dropped, every whitespace character removed — also inside the line), then matched
case-insensitively against "[Interface]", "[Peer]" or "Key=" prefixes of the current section.
An empty value never matches a key (wg reports such a line as unrecognized). The first bad line
stops parsing with a `ConfigError` naming file, line and key; the message is the text wg prints.

Alongside the parsed values every section keeps its original lines, so `format_config` can write
the file back with comments and order intact.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from wgpy.conf import values
from wgpy.model import HostPort, IPInterface, IPNetwork

# Keys wg itself understands, by section (lower case → canonical spelling).
WG_INTERFACE_KEYS = {k.lower(): k for k in ("PrivateKey", "ListenPort", "FwMark")}
WG_PEER_KEYS = {
    k.lower(): k
    for k in ("PublicKey", "PresharedKey", "AllowedIPs", "Endpoint", "PersistentKeepalive")
}
# Keys only wg-quick understands; `wg setconf` rejects them ("Line unrecognized").
QUICK_INTERFACE_KEYS = {
    k.lower(): k
    for k in ("Address", "DNS", "MTU", "Table", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig")
}


class ConfigError(ValueError):
    """A configuration line wg would reject. str() is "path:line: key: message"."""

    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        super().__init__(path, line, key, message)
        self.path = path
        self.line = line
        self.key = key
        self.message = message

    def __str__(self) -> str:
        if self.key:
            return f"{self.path}:{self.line}: {self.key}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class SourceLine:
    """One original line: its number, its text without the newline, and the key it set
    (canonical spelling) or None for blank/comment/header lines."""

    number: int
    text: str
    key: str | None = None


@dataclass
class InterfaceSection:
    private_key: bytes | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    addresses: list[IPInterface] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    mtu: int | None = None
    table: str | None = None
    pre_up: list[str] = field(default_factory=list)
    post_up: list[str] = field(default_factory=list)
    pre_down: list[str] = field(default_factory=list)
    post_down: list[str] = field(default_factory=list)
    save_config: bool = False
    line: int = 0
    comments: list[str] = field(default_factory=list)
    source: list[SourceLine] = field(default_factory=list)
    # Snapshot of the values as parsed, so the writer can tell whether the section changed.
    parsed_snapshot: tuple[object, ...] | None = field(default=None, repr=False, compare=False)


@dataclass
class PeerSection:
    public_key: bytes = b""
    preshared_key: bytes | None = None
    endpoint: str | None = None  # as written: "host:port" or "[v6]:port"
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    persistent_keepalive: int | None = None
    line: int = 0
    comments: list[str] = field(default_factory=list)
    source: list[SourceLine] = field(default_factory=list)
    # Filled only when parse_config was given a resolver (wg resolves while parsing).
    resolved_endpoint: HostPort | None = None
    parsed_snapshot: tuple[object, ...] | None = field(default=None, repr=False, compare=False)


@dataclass
class Config:
    interface: InterfaceSection = field(default_factory=InterfaceSection)
    peers: list[PeerSection] = field(default_factory=list)
    has_interface_section: bool = False
    # Lines before the first section (comments and blanks only).
    preamble: list[SourceLine] = field(default_factory=list)
    # wg's non-fatal warnings, as (line, text) in file order.
    warnings: list[tuple[int, str]] = field(default_factory=list)
    path: str = "<stdin>"


def clean_line(raw: str) -> str:
    """The line as wg sees it: comment dropped, all whitespace removed."""
    hash_at = raw.find("#")
    if hash_at >= 0:
        raw = raw[:hash_at]
    return values.strip_wg_space(raw)


def _split_key(
    cleaned: str, allowed: dict[str, str], allow_empty: bool = False
) -> tuple[str, str] | None:
    """wg's get_value(): "Key=" prefix, case-insensitive, with a non-empty value."""
    eq = cleaned.find("=")
    if eq <= 0 or (eq == len(cleaned) - 1 and not allow_empty):
        return None
    name = allowed.get(cleaned[:eq].lower())
    if name is None:
        return None
    return name, cleaned[eq + 1 :]


def _quick_value(raw: str) -> str:
    """wg-quick's value: text after the first '=', comment dropped, ends trimmed (inner spaces
    kept, so PostUp commands survive)."""
    hash_at = raw.find("#")
    if hash_at >= 0:
        raw = raw[:hash_at]
    return raw.partition("=")[2].strip(values.WG_SPACE)


def _is_dns_server(item: str) -> bool:
    # wg-quick: [0-9.]+ or anything with ':' is a server, the rest are search domains.
    return ":" in item or (bool(item) and all(c in "0123456789." for c in item))


def _parse_bool(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError(f"`{text}' is neither true nor false")


def interface_snapshot(section: InterfaceSection) -> tuple[object, ...]:
    return (
        section.private_key, section.listen_port, section.fwmark, list(section.addresses),
        list(section.dns_servers), list(section.dns_search), section.mtu, section.table,
        list(section.pre_up), list(section.post_up), list(section.pre_down),
        list(section.post_down), section.save_config, list(section.comments),
    )


def peer_snapshot(section: PeerSection) -> tuple[object, ...]:
    return (
        section.public_key, section.preshared_key, section.endpoint, list(section.allowed_ips),
        section.persistent_keepalive, list(section.comments),
    )


class _Parser:
    def __init__(
        self,
        path: str,
        quick: bool,
        resolve_endpoint: Callable[[str], HostPort] | None,
        on_warning: Callable[[int, str], None] | None = None,
    ) -> None:
        self.on_warning = on_warning
        self.path = path
        self.quick = quick
        self.resolve_endpoint = resolve_endpoint
        self.config = Config(path=path)
        self.section: InterfaceSection | PeerSection | None = None
        self.peer_has_public_key: list[bool] = []
        self.pending_comments: list[SourceLine] = []  # comment lines awaiting a section

    def error(self, number: int, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, number, key, message)

    def feed(self, number: int, raw: str) -> None:
        cleaned = clean_line(raw)
        source = SourceLine(number, raw)
        if not cleaned:
            self._keep_non_key_line(source)
            return
        lowered = cleaned.lower()
        if lowered == "[interface]":
            self._open_interface(source)
            return
        if lowered == "[peer]":
            self._open_peer(source)
            return
        self._flush_pending_into_section()
        if isinstance(self.section, InterfaceSection):
            self._interface_line(source, cleaned)
        elif isinstance(self.section, PeerSection):
            self._peer_line(source, cleaned)
        else:
            raise self.error(number, cleaned.partition("=")[0], f"Line unrecognized: `{cleaned}'")

    # -- structure -----------------------------------------------------------------------

    def _keep_non_key_line(self, source: SourceLine) -> None:
        # Comments and blanks after the last key of a section may belong to the next section
        # ("# alice's laptop" above "[Peer]"); decide when the next key or header arrives.
        self.pending_comments.append(source)

    def _flush_pending_into_section(self) -> None:
        if not self.pending_comments:
            return
        if self.section is None:
            self.config.preamble.extend(self.pending_comments)
        else:
            self.section.source.extend(self.pending_comments)
            self.section.comments.extend(_comment_texts(self.pending_comments))
        self.pending_comments = []

    def _take_leading_comments(self) -> list[SourceLine]:
        """The block of comment lines directly above a header belongs to the new section;
        earlier blank and comment lines stay with the previous section (or the preamble)."""
        pending = self.pending_comments
        split = len(pending)
        while split > 0 and "#" in pending[split - 1].text:
            split -= 1
        leading = pending[split:]
        self.pending_comments = pending[:split]
        self._flush_pending_into_section()
        return leading

    def _open_interface(self, source: SourceLine) -> None:
        leading = self._take_leading_comments()
        section = self.config.interface
        if not self.config.has_interface_section:
            section.line = source.number
        self.config.has_interface_section = True
        section.source.extend(leading)
        section.comments.extend(_comment_texts(leading))
        section.source.append(source)
        self.section = section

    def _open_peer(self, source: SourceLine) -> None:
        leading = self._take_leading_comments()
        peer = PeerSection(line=source.number)
        peer.source.extend(leading)
        peer.comments.extend(_comment_texts(leading))
        peer.source.append(source)
        self.config.peers.append(peer)
        self.peer_has_public_key.append(False)
        self.section = peer

    def finish(self) -> Config:
        self._flush_pending_into_section()
        for peer, has_key in zip(self.config.peers, self.peer_has_public_key):
            if not has_key:
                raise self.error(peer.line, "PublicKey", "A peer is missing a public key")
        self.config.interface.parsed_snapshot = interface_snapshot(self.config.interface)
        for peer in self.config.peers:
            peer.parsed_snapshot = peer_snapshot(peer)
        return self.config

    # -- keys --------------------------------------------------------------------------------

    def _interface_line(self, source: SourceLine, cleaned: str) -> None:
        section = self.config.interface
        number = source.number
        wg_key = _split_key(cleaned, WG_INTERFACE_KEYS)
        if wg_key is not None:
            key, value = wg_key
            try:
                if key == "PrivateKey":
                    section.private_key = values.parse_key(value)
                elif key == "ListenPort":
                    section.listen_port = values.parse_port(value)
                else:
                    section.fwmark = values.parse_fwmark(value)
            except ValueError as err:
                raise self.error(number, key, str(err)) from None
            source.key = key
            section.source.append(source)
            return
        quick_key = _split_key(cleaned, QUICK_INTERFACE_KEYS, True) if self.quick else None
        if quick_key is None:
            raise self.error(number, cleaned.partition("=")[0], f"Line unrecognized: `{cleaned}'")
        key = quick_key[0]
        try:
            self._quick_interface_key(section, key, _quick_value(source.text))
        except ValueError as err:
            raise self.error(number, key, str(err)) from None
        source.key = key
        section.source.append(source)

    def _quick_interface_key(self, section: InterfaceSection, key: str, value: str) -> None:
        items = value.replace(",", " ").split()
        if key == "Address":
            for item in items:
                try:
                    section.addresses.append(ipaddress.ip_interface(item))
                except ValueError:
                    raise ValueError(f"Unable to parse address: `{item}'") from None
        elif key == "DNS":
            for item in items:
                (section.dns_servers if _is_dns_server(item) else section.dns_search).append(item)
        elif key == "MTU":
            if not value.isdigit() or not 0 < int(value) <= 0xFFFFFFFF:
                raise ValueError(f"MTU is not a positive number: `{value}'")
            section.mtu = int(value)
        elif key == "Table":
            section.table = value
        elif key == "PreUp":
            section.pre_up.append(value)
        elif key == "PostUp":
            section.post_up.append(value)
        elif key == "PreDown":
            section.pre_down.append(value)
        elif key == "PostDown":
            section.post_down.append(value)
        elif key == "SaveConfig":
            section.save_config = _parse_bool(value)

    def _peer_line(self, source: SourceLine, cleaned: str) -> None:
        peer = self.section
        assert isinstance(peer, PeerSection)
        number = source.number
        parsed = _split_key(cleaned, WG_PEER_KEYS)
        if parsed is None:
            raise self.error(number, cleaned.partition("=")[0], f"Line unrecognized: `{cleaned}'")
        key, value = parsed
        try:
            if key == "PublicKey":
                peer.public_key = values.parse_key(value)
                self.peer_has_public_key[-1] = True
            elif key == "PresharedKey":
                peer.preshared_key = values.parse_key(value)
            elif key == "AllowedIPs":
                result = values.parse_allowed_ips(value)
                for warning in result.warnings:
                    self.config.warnings.append((number, warning))
                    if self.on_warning is not None:
                        self.on_warning(number, warning)
                peer.allowed_ips.extend(result.networks)
            elif key == "Endpoint":
                values.split_endpoint(value)
                if self.resolve_endpoint is not None:
                    peer.resolved_endpoint = self.resolve_endpoint(value)
                peer.endpoint = value
            else:
                peer.persistent_keepalive = values.parse_persistent_keepalive(value)
        except ValueError as err:
            raise self.error(number, key, str(err)) from None
        source.key = key
        peer.source.append(source)


def _comment_texts(lines: list[SourceLine]) -> list[str]:
    texts = []
    for line in lines:
        hash_at = line.text.find("#")
        if hash_at >= 0 and not clean_line(line.text):
            texts.append(line.text[hash_at:])
    return texts


def parse_config(
    text: str,
    path: str = "<stdin>",
    quick: bool = True,
    resolve_endpoint: Callable[[str], HostPort] | None = None,
    on_warning: Callable[[int, str], None] | None = None,
) -> Config:
    """Parse a wg (quick=False) or wg-quick (quick=True) configuration.

    `resolve_endpoint`, if given, is called for each Endpoint line as it is read (wg resolves
    while parsing, so a resolution failure is reported at its line, before later lines are read);
    it raises ValueError with wg's message on failure. `on_warning(line, text)` is called for
    each non-fatal warning as soon as it is found (also kept in `Config.warnings`).
    """
    parser = _Parser(path, quick, resolve_endpoint, on_warning)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for index, raw in enumerate(lines, start=1):
        parser.feed(index, raw)
    return parser.finish()
