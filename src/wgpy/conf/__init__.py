"""The wg / wg-quick configuration format: a line parser that names file:line, a writer, and
the set request a file makes (conf/request.py)."""

from wgpy.conf.parser import (
    Config,
    ConfigError,
    InterfaceSection,
    PeerSection,
    SourceLine,
    parse_config,
)
from wgpy.conf.writer import format_config, strip_config, write_config_file

__all__ = [
    "Config",
    "ConfigError",
    "InterfaceSection",
    "PeerSection",
    "SourceLine",
    "format_config",
    "parse_config",
    "strip_config",
    "write_config_file",
]
