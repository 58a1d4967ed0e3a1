"""Writing configurations back: `format_config` (round trip keeping comments and order) and
`strip_config` (what `wg-quick strip` keeps for `wg setconf`).

A section whose values did not change since parsing is written back byte for byte from its
original lines. A changed section keeps its original line order and comments: a key whose
value did not change keeps its original lines byte for byte (repeated PostUp lines stay where
they were), a changed key is rewritten where it first appeared (its repeated lines are merged
there), keys that were not in the file are appended after the section's last key line, keys
whose value was cleared disappear. Sections added by the caller are written in canonical form.

Whatever writes a configuration file goes through `write_config_file`, which refuses text with
a control character other than tab (a newline smuggled into a value would otherwise add lines
of its own), and writes atomically and privately (`write_private_file`).
"""

from __future__ import annotations

import os
import re
import tempfile

from wgpy.conf.disabled import is_disabled_line
from wgpy.conf.parser import (
    QUICK_INTERFACE_KEYS,
    Config,
    ConfigError,
    InterfaceSection,
    PeerSection,
    SourceLine,
    _comment_texts,
    interface_snapshot,
    peer_snapshot,
)
from wgpy.keys import key_to_base64

# "#[Peer]", "# PublicKey = ...": a section or key line someone commented out by hand
# (disable-peer's own "#disabled# " lines are told by conf.disabled)
COMMENTED_OUT_LINE = re.compile(
    r"\s*#\s*(\[(peer|interface)\]|(publickey|presharedkey|allowedips|endpoint|"
    r"persistentkeepalive|privatekey|listenport|fwmark)\s*=)", re.IGNORECASE)

INTERFACE_KEY_ORDER = (
    "PrivateKey", "ListenPort", "FwMark", "Address", "DNS", "MTU", "Table",
    "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig",
)
PEER_KEY_ORDER = ("PublicKey", "PresharedKey", "AllowedIPs", "Endpoint", "PersistentKeepalive")


def _interface_lines(section: InterfaceSection, present: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if section.private_key is not None:
        out["PrivateKey"] = [key_to_base64(section.private_key)]
    if section.listen_port is not None:
        out["ListenPort"] = [str(section.listen_port)]
    if section.fwmark is not None:
        out["FwMark"] = [f"0x{section.fwmark:x}" if section.fwmark else "off"]
    if section.addresses:
        out["Address"] = [", ".join(str(a) for a in section.addresses)]
    if section.dns_servers or section.dns_search:
        out["DNS"] = [", ".join([*section.dns_servers, *section.dns_search])]
    if section.mtu is not None:
        out["MTU"] = [str(section.mtu)]
    if section.table is not None:
        out["Table"] = [section.table]
    for key, commands in (
        ("PreUp", section.pre_up), ("PostUp", section.post_up),
        ("PreDown", section.pre_down), ("PostDown", section.post_down),
    ):
        if commands:
            out[key] = list(commands)
    if section.save_config or "SaveConfig" in present:
        out["SaveConfig"] = ["true" if section.save_config else "false"]
    return out


def _peer_lines(peer: PeerSection, present: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"PublicKey": [key_to_base64(peer.public_key)]}
    if peer.preshared_key is not None:
        out["PresharedKey"] = [key_to_base64(peer.preshared_key)]
    if peer.allowed_ips:
        out["AllowedIPs"] = [", ".join(str(n) for n in peer.allowed_ips)]
    if peer.endpoint is not None:
        out["Endpoint"] = [peer.endpoint]
    if peer.persistent_keepalive is not None:
        out["PersistentKeepalive"] = [
            str(peer.persistent_keepalive) if peer.persistent_keepalive else "off"
        ]
    return out


def _render_section(
    header: str,
    source: list[SourceLine],
    comments: list[str],
    rendered: dict[str, list[str]],
    order: tuple[str, ...],
    unchanged: frozenset[str] = frozenset(),
) -> list[str]:
    def key_lines(key: str) -> list[str]:
        return [f"{key} = {value}" for value in rendered.get(key, [])]

    source_comments = _comment_texts(source)
    has_header = any(line.key is None and line.text.strip().startswith("[") for line in source)
    if not source or not has_header or source_comments != comments:
        canonical = [*comments, header]
        for key in order:
            canonical.extend(key_lines(key))
        return canonical

    lines: list[str] = []
    written: set[str] = set()
    last_key_index = -1
    header_index = -1
    for line in source:
        if line.key is None:
            if header_index < 0 and line.text.strip().startswith("["):
                header_index = len(lines)
            lines.append(line.text)
            continue
        if line.key in unchanged:
            written.add(line.key)
            lines.append(line.text)
            last_key_index = len(lines) - 1
            continue
        if line.key in written:
            continue
        written.add(line.key)
        new_lines = key_lines(line.key)
        if new_lines:
            hash_at = line.text.find("#")
            if hash_at >= 0 and len(new_lines) == 1:
                # keep an inline comment on a single-valued key
                new_lines[0] = f"{new_lines[0]} {line.text[hash_at:]}"
            lines.extend(new_lines)
            last_key_index = len(lines) - 1
    missing = [text for key in order if key not in written for text in key_lines(key)]
    insert_at = (last_key_index if last_key_index >= 0 else header_index) + 1
    lines[insert_at:insert_at] = missing
    return lines


def format_config(config: Config) -> str:
    """The configuration as text, keeping comments and the original order (see module doc)."""
    out: list[str] = [line.text for line in config.preamble]
    interface = config.interface
    sections: list[InterfaceSection | PeerSection] = []
    if config.has_interface_section or interface_snapshot(interface) != interface_snapshot(
        InterfaceSection()
    ):
        sections.append(interface)
    sections.extend(config.peers)
    # Sections keep the order of the file; new ones (no source lines) go after, as given.
    unplaced = 1 << 62
    sections.sort(key=lambda s: s.source[0].number if s.source else unplaced)
    order: tuple[str, ...]
    for section in sections:
        if isinstance(section, InterfaceSection):
            snapshot = interface_snapshot(section)
            header, order = "[Interface]", INTERFACE_KEY_ORDER
        else:
            snapshot = peer_snapshot(section)
            header, order = "[Peer]", PEER_KEY_ORDER
        if section.source and section.parsed_snapshot == snapshot:
            out.extend(line.text for line in section.source)
            continue
        present = {line.key for line in section.source if line.key}
        rendered = _section_lines(section, present)
        unchanged: frozenset[str] = frozenset()
        if section.parsed_snapshot is not None:
            before = _section_lines(_as_parsed(section), present)
            unchanged = frozenset(k for k in present if before.get(k) == rendered.get(k))
        if not section.source:
            _separate(out)
        out.extend(_render_section(
            header, section.source, section.comments, rendered, order, unchanged))
    return "".join(line + "\n" for line in out)


def _section_lines(
    section: InterfaceSection | PeerSection, present: set[str]
) -> dict[str, list[str]]:
    if isinstance(section, InterfaceSection):
        return _interface_lines(section, present)
    return _peer_lines(section, present)


def _as_parsed(section: InterfaceSection | PeerSection) -> InterfaceSection | PeerSection:
    """The section with the values it had when parsed (from its snapshot)."""
    snapshot = section.parsed_snapshot
    assert snapshot is not None
    if isinstance(section, InterfaceSection):
        (private_key, listen_port, fwmark, addresses, dns_servers, dns_search, mtu, table,
         pre_up, post_up, pre_down, post_down, save_config, _comments) = snapshot
        return InterfaceSection(
            private_key=private_key, listen_port=listen_port, fwmark=fwmark,  # type: ignore[arg-type]
            addresses=addresses, dns_servers=dns_servers, dns_search=dns_search,  # type: ignore[arg-type]
            mtu=mtu, table=table, pre_up=pre_up, post_up=post_up,  # type: ignore[arg-type]
            pre_down=pre_down, post_down=post_down, save_config=save_config,  # type: ignore[arg-type]
        )
    public_key, preshared_key, endpoint, allowed_ips, keepalive, _comments = snapshot
    return PeerSection(
        public_key=public_key, preshared_key=preshared_key, endpoint=endpoint,  # type: ignore[arg-type]
        allowed_ips=allowed_ips, persistent_keepalive=keepalive,  # type: ignore[arg-type]
    )


def without_peers(text: str, peers: list[PeerSection]) -> str:
    """text with the given (parsed) peers' sections deleted and every other byte kept.

    A peer's lines are the comment block directly above its header (from after the last
    commented-out config line in it, if any), the header, and its lines up to its last key
    line. Comments after that (a note, a commented-out peer) are kept, as are blank lines
    between comments; blank lines left at the end of the file are dropped.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    drop: set[int] = set()
    for peer in peers:
        last_key = max((line.number for line in peer.source if line.key), default=peer.line)
        # A commented-out section right above the header (a disabled peer) is not this peer's.
        commented_out = [line.number for line in peer.source if line.number < peer.line and (
            COMMENTED_OUT_LINE.match(line.text) or is_disabled_line(line.text))]
        first_own = max(commented_out, default=0) + 1
        drop.update(line.number for line in peer.source if first_own <= line.number <= last_key)
        trailing = [line for line in peer.source if line.number > last_key]
        first = peer.source[0].number if peer.source else peer.line
        blank_before = first == 1 or not lines[first - 2].strip()
        if not any(line.text.strip() for line in trailing):
            drop.update(line.number for line in trailing)
        elif blank_before:  # no doubled blank line where the peer was
            for line in trailing:
                if line.text.strip():
                    break
                drop.add(line.number)
    kept = [line for number, line in enumerate(lines, start=1) if number not in drop]
    while kept and not kept[-1].strip():
        kept.pop()
    return "".join(line + "\n" for line in kept) if kept else ""


def _separate(out: list[str]) -> None:
    if out and out[-1].strip():
        out.append("")


# -- wg-quick strip ---------------------------------------------------------------------------

_BASH_IFS = " \t\n"


def strip_config(text: str) -> str:
    """The configuration without wg-quick's own keys, as wg-quick builds it for `wg setconf`.

    Mirrors wg-quick's parse_options: each line is read with `read -r` (ends trimmed of spaces
    and tabs), the key is the text before '=' (comment dropped, ends trimmed, compared without
    case), "[Interface]" starts the interface section and any other "[..." ends it; wg-quick keys
    inside the interface section are dropped, every other line is kept. `wg-quick strip` prints
    this text followed by one more newline (bash `echo`).
    """
    kept: list[str] = []
    in_interface = False
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for raw in lines:
        line = raw.strip(_BASH_IFS)
        stripped = line.split("#", 1)[0]
        key = stripped.split("=", 1)[0].strip(_BASH_IFS + "\r\v\f")
        if key.startswith("["):
            in_interface = False
        if key.lower() == "[interface]":
            in_interface = True
        if in_interface and key.lower() in QUICK_INTERFACE_KEYS:
            continue
        kept.append(line + "\n")
    return "".join(kept)


def check_no_control_characters(text: str, path: str = "<config>") -> None:
    """ConfigError naming the line (and key) of the first control character other than tab
    (a carriage return just before a line's end, as in a CRLF file, is allowed)."""
    for number, line in enumerate(text.split("\n"), start=1):
        body = line.removesuffix("\r")
        bad = next((c for c in body if (ord(c) < 0x20 and c != "\t") or c == "\x7f"), None)
        if bad is not None:
            key = body.split("=", 1)[0].strip() if "=" in body else ""
            raise ConfigError(path, number, key,
                              f"refusing to write a control character (0x{ord(bad):02x})")


def write_config_file(path: str | os.PathLike[str], text: str) -> None:
    """Write a configuration (it holds a private key) atomically, mode 0600, after checking
    that no line holds a control character (ConfigError naming file, line and key)."""
    check_no_control_characters(text, os.fspath(path))
    write_private_file(path, text.encode())


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write data (a key, a client config, its QR code) to path: a temporary file created
    0600 with O_EXCL in the same directory, flushed to disk, then renamed over `path`.

    So a symlink at `path` is replaced, never followed, and a file someone else created there
    in advance is replaced by ours, never reused (its owner cannot read what we write)."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(prefix=".wgpy-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
