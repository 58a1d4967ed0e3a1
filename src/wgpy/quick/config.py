"""Finding and reading a wg-quick configuration file, as wg-quick's parse_options does.

`wg0` means /etc/wireguard/wg0.conf; a path's base name (without `.conf`) is the interface name,
which must be a valid Linux interface name. The whole file is parsed (and so validated) here,
before anything on the system changes: an error names file, line and key.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from wgpy.conf import Config, ConfigError, parse_config, strip_config
from wgpy.quick import log

CONFIG_DIR = Path("/etc/wireguard")
# wg-quick's interface-name pattern: at most IFNAMSIZ - 1 characters from this set.
INTERFACE_NAME = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")
CONFIG_FILE_NAME = re.compile(r"([a-zA-Z0-9_=+.-]{1,15})\.conf")

__all__ = ["ConfigError", "QuickConfig", "QuickError", "load"]


class QuickError(Exception):
    """A failure wgpy-quick reports as `wgpy-quick: MESSAGE` and exit status 1."""


@dataclass
class QuickConfig:
    interface: str
    path: Path
    text: str
    config: Config

    @property
    def stripped(self) -> str:
        """The file without wg-quick's keys: what the device itself is configured with."""
        return strip_config(self.text)

    @property
    def table(self) -> str:
        """The Table key, "" when absent (wg-quick treats "" and "auto" alike)."""
        return self.config.interface.table or ""


def resolve_path(argument: str) -> tuple[Path, str]:
    """(absolute config path, interface name) for CONFIG_FILE | INTERFACE."""
    path = Path(argument)
    if INTERFACE_NAME.fullmatch(argument):
        path = CONFIG_DIR / f"{argument}.conf"
    if not path.exists():
        raise QuickError(f"`{path}' does not exist")
    match = CONFIG_FILE_NAME.fullmatch(path.name)
    if match is None:
        raise QuickError("The config file must be a valid interface name, followed by .conf")
    return path.resolve(), match.group(1)


def warn_if_world_accessible(path: Path) -> None:
    # wg-quick warns when the file and its directory both grant some permission to "other".
    file_mode = stat.S_IMODE(os.stat(path).st_mode)
    dir_mode = stat.S_IMODE(os.stat(path.parent).st_mode)
    if file_mode & dir_mode & 0o007:
        log.warning(f"`{path}' is world accessible")


def read(argument: str) -> tuple[Path, str, str]:
    """(path, interface name, text) of CONFIG_FILE | INTERFACE, with wg-quick's checks."""
    path, interface = resolve_path(argument)
    warn_if_world_accessible(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise QuickError(f"Unable to read `{path}': {err.strerror}") from None
    except UnicodeDecodeError:
        raise QuickError(f"`{path}' is not a text file") from None
    return path, interface, text


def load(argument: str) -> QuickConfig:
    """Read and fully validate the file (every key, as wg and wg-quick would parse it)."""
    path, interface, text = read(argument)
    config = parse_config(text, str(path), quick=True)
    quick = QuickConfig(interface=interface, path=path, text=text, config=config)
    check_table(quick)
    return quick


ROUTING_TABLE_NAMES = {"main": 254, "local": 255, "default": 253}
RT_TABLES_FILES = (Path("/etc/iproute2/rt_tables"), Path("/usr/share/iproute2/rt_tables"))


def routing_table_number(name: str) -> int:
    """A Table value other than auto/off: a number or a name from rt_tables, like `ip route`."""
    if name.isdigit():
        number = int(name)
        if 0 < number <= 0xFFFFFFFF:
            return number
        raise ValueError(f"Table is not a valid routing table: `{name}'")
    if name in ROUTING_TABLE_NAMES:
        return ROUTING_TABLE_NAMES[name]
    for table_file in RT_TABLES_FILES:
        try:
            lines = table_file.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) == 2 and fields[1] == name and fields[0].isdigit():
                return int(fields[0])
    raise ValueError(f"Table is not a valid routing table: `{name}'")


def check_table(quick: QuickConfig) -> None:
    """Reject a Table value `ip route` would not take, naming its line, before any change."""
    table = quick.table
    if table in ("", "auto", "off"):
        return
    try:
        routing_table_number(table)
    except ValueError as err:
        line = next(
            (s.number for s in quick.config.interface.source if s.key == "Table"),
            quick.config.interface.line,
        )
        raise ConfigError(str(quick.path), line, "Table", str(err)) from None
