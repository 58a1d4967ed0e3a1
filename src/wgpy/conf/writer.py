"""Writing configurations back: `format_config` (round trip keeping comments and order) and
`strip_config` (what `wg-quick strip` keeps for `wg setconf`).

A section whose values did not change since parsing is written back byte for byte from its
original lines. A changed section keeps its original line order and comments: each key is
rewritten where it first appeared (repeated lines of one key are merged there), keys that were
not in the file are appended after the section's last key line, keys whose value was cleared
disappear. Sections added by the caller are written in canonical form.
"""

from __future__ import annotations

import os
import tempfile

from wgpy.conf.parser import (
    QUICK_INTERFACE_KEYS,
    Config,
    InterfaceSection,
    PeerSection,
    SourceLine,
    _comment_texts,
    interface_snapshot,
    peer_snapshot,
)
from wgpy.keys import key_to_base64

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
        rendered = (
            _interface_lines(section, present)
            if isinstance(section, InterfaceSection)
            else _peer_lines(section, present)
        )
        if not section.source:
            _separate(out)
        out.extend(_render_section(header, section.source, section.comments, rendered, order))
    return "".join(line + "\n" for line in out)


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


def write_config_file(path: str | os.PathLike[str], text: str) -> None:
    """Write a configuration (it holds a private key) atomically, mode 0600: a temporary file
    in the same directory, created 0600, flushed to disk, then renamed over `path`."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(prefix=".wgpy-", suffix=".conf", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
