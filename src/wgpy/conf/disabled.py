"""Disabled peers: a [Peer] kept in the config file but commented out, so that every reader of
the format (wg, wg-quick, wgpy-quick, `wg-quick strip`, `wg syncconf`) leaves it out.

Format (documented in README "Operator tools"): every line of the peer's section, from its
first to its last non-blank line (leading comments such as `# friendly_name = NAME` included),
is prefixed with `#disabled# `; a blank line inside the section becomes `#disabled#`. Blank
lines around the section are not touched. Enabling removes exactly those prefixes, so
disable then enable gives the file back byte for byte, and no other line ever moves.

    #disabled# [Peer]
    #disabled# # friendly_name = phone
    #disabled# PublicKey = ...
    #disabled# AllowedIPs = 10.9.0.2/32

A run of consecutive marked lines is parsed as a config of its own (un-prefixed), so a
disabled peer has the same name, key and settings as when it was live.
"""

from __future__ import annotations

from dataclasses import dataclass

from wgpy.conf.parser import ConfigError, PeerSection, parse_config

MARKER = "#disabled#"
PREFIX = MARKER + " "


def is_disabled_line(text: str) -> bool:
    return text == MARKER or text.startswith(PREFIX)


def disable_lines(lines: list[str]) -> list[str]:
    """The section's lines, commented out (blank lines at its ends are kept as they are)."""
    marked = list(lines)
    filled = [i for i, text in enumerate(lines) if text.strip()]
    if not filled:
        return marked
    for i in range(filled[0], filled[-1] + 1):
        marked[i] = PREFIX + lines[i] if lines[i] else MARKER
    return marked


def enable_line(text: str) -> str:
    if text == MARKER:
        return ""
    if text.startswith(PREFIX):
        return text[len(PREFIX):]
    return text


@dataclass
class DisabledPeer:
    """A disabled peer found in a file: its section (parsed from the un-prefixed lines) and the
    file's line numbers (1-based) that belong to it."""

    section: PeerSection
    numbers: list[int]


def find_disabled_peers(lines: list[str], path: str = "<config>") -> list[DisabledPeer]:
    """Every disabled [Peer] in the file's lines. A marked run that does not parse as [Peer]
    sections is an error naming its first line: enable would otherwise write a broken file."""
    found: list[DisabledPeer] = []
    run: list[int] = []
    for number, text in enumerate([*lines, ""], start=1):
        if number <= len(lines) and is_disabled_line(text):
            run.append(number)
            continue
        if run:
            found += _parse_run(lines, run, path)
            run = []
    return found


def _parse_run(lines: list[str], numbers: list[int], path: str) -> list[DisabledPeer]:
    text = "".join(enable_line(lines[n - 1]) + "\n" for n in numbers)
    try:
        config = parse_config(text, path=path)
    except ConfigError as err:
        line = numbers[err.line - 1] if 0 < err.line <= len(numbers) else numbers[0]
        raise ConfigError(path, line, err.key, f"{err.message} (in a disabled peer)") from None
    if config.has_interface_section:
        raise ConfigError(path, numbers[0], "",
                          "a disabled block must hold [Peer] sections only")
    peers = []
    for section in config.peers:
        peers.append(DisabledPeer(section, [numbers[line.number - 1] for line in section.source]))
    return peers
