"""The server's config file as the operator tools read and edit it.

Edits are made on the text, line by line, using the line numbers `wgpy.conf.parse_config`
records for every section: adding a peer appends a block, removing one deletes its comment
block, header and key lines (`conf.writer.without_peers`; comments after its last key, such as
a commented-out peer, stay), remembering the endpoint adds or replaces one comment line
under [Interface]. Every other byte of the file stays as it was (comments, order, spacing), and
the result is parsed again before it is written, so a broken edit never reaches the disk.

Two comment conventions (wg and wg-quick ignore comment lines):

- a peer's name: `# friendly_name = NAME` as the first line of its [Peer] section — the form
  prometheus_wireguard_exporter reads, so both tools agree. `# Name = NAME` is read as well.
- the endpoint clients should use: `# wgpy: Endpoint = HOST:PORT` in [Interface].
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wgpy.conf import Config, ConfigError, PeerSection, parse_config, values
from wgpy.conf.writer import without_peers, write_config_file

NAME_COMMENT = re.compile(r"^\s*#\s*(?:friendly_name|name)\s*=\s*(.*?)\s*$", re.IGNORECASE)
ENDPOINT_COMMENT = re.compile(r"^\s*#\s*wgpy:\s*endpoint\s*=\s*(.*?)\s*$", re.IGNORECASE)

DEFAULT_CONFIG_DIR = Path("/etc/wireguard")


def default_config_path(ifname: str) -> Path:
    return DEFAULT_CONFIG_DIR / f"{ifname}.conf"


def name_comment(name: str) -> str:
    return f"# friendly_name = {name}"


def endpoint_comment(endpoint: str) -> str:
    return f"# wgpy: Endpoint = {endpoint}"


def check_name(name: str) -> str:
    """A peer name fit for one comment line; raises ValueError otherwise."""
    stripped = name.strip()
    if not stripped:
        raise ValueError("a peer name must not be empty")
    if not stripped.isprintable():
        raise ValueError("a peer name must be printable: no control characters or line breaks")
    return stripped


def as_key(name_or_key: str) -> bytes | None:
    """The public key a NAME-or-KEY argument spells (base64, as wg writes it), or None: a name."""
    try:
        return values.parse_key(name_or_key)
    except ValueError:
        return None


def peer_name(peer: PeerSection) -> str | None:
    """The name written in the peer's section (or in the comment block right above it)."""
    for line in peer.source:
        if line.key is None:
            match = NAME_COMMENT.match(line.text)
            if match and match.group(1):
                return match.group(1)
    return None


@dataclass
class ServerConfig:
    path: Path
    text: str
    config: Config

    @property
    def lines(self) -> list[str]:
        """The file's lines as the parser numbers them (split on "\\n" only)."""
        lines = self.text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return lines

    def remembered_endpoint(self) -> str | None:
        for line in self.config.interface.source:
            match = ENDPOINT_COMMENT.match(line.text)
            if match and match.group(1):
                return match.group(1)
        return None

    def find_peer(self, name_or_key: bytes | str) -> PeerSection | None:
        for peer in self.config.peers:
            if isinstance(name_or_key, bytes):
                if peer.public_key == name_or_key:
                    return peer
            elif (peer_name(peer) or "").casefold() == name_or_key.casefold():
                return peer
        return None

    # -- edits: each returns the new text; nothing is written --------------------------------

    def with_peer_appended(self, block: list[str]) -> str:
        lines = self.lines
        if lines and lines[-1].strip():
            lines.append("")
        return _join([*lines, *block])

    def with_peer_removed(self, peer: PeerSection) -> str:
        return without_peers(self.text, [peer])

    def with_endpoint_remembered(self, endpoint: str) -> str:
        lines = self.lines
        comment = endpoint_comment(endpoint)
        interface = self.config.interface
        for line in interface.source:
            if ENDPOINT_COMMENT.match(line.text):
                lines[line.number - 1] = comment
                return _join(lines)
        header = next(
            (line for line in interface.source if line.key is None
             and line.text.strip().lower() == "[interface]"),
            None,
        )
        if header is None:
            raise ValueError(f"{self.path}: no [Interface] section to remember the endpoint in")
        lines.insert(header.number, comment)
        return _join(lines)


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def load(path: Path) -> ServerConfig:
    """Read and parse a wg-quick config; ConfigError (file:line) if wg-quick would reject it."""
    text = path.read_text()
    return ServerConfig(path, text, parse_config(text, path=str(path)))


def reparse(server: ServerConfig, new_text: str) -> ServerConfig:
    """The edited config, parsed again; ConfigError if the edit broke it."""
    return ServerConfig(server.path, new_text, parse_config(new_text, path=str(server.path)))


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for editing path: a flock on its directory, since the file
    itself is replaced by rename (two add-peer runs must not both take the same address)."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        yield  # the load that follows reports the missing file
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Replace path atomically with a 0600 file holding text (keys live in it)."""
    write_config_file(path, text)


__all__ = [
    "ConfigError",
    "ServerConfig",
    "check_name",
    "default_config_path",
    "load",
    "peer_name",
    "reparse",
    "write_private",
]
