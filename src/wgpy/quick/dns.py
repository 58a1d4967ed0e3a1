"""DNS while the interface is up, through resolvconf(8) exactly as wg-quick calls it.

`resolvconf -a IFACE -m 0 -x` takes a resolv.conf fragment on stdin (-m 0: highest metric,
-x: exclusive, i.e. these servers only); `resolvconf -d IFACE -f` removes it. With Debian's
resolvconf, interfaces are ordered by /etc/resolvconf/interface-order, and wg-quick names the
record after the first wildcard entry there (usually `tun.`) so it sorts with other VPNs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from wgpy.quick import log
from wgpy.quick.config import QuickError

INTERFACE_ORDER = Path("/etc/resolvconf/interface-order")
_WILDCARD = re.compile(r"([A-Za-z0-9-]+)\*")


def record_prefix() -> str:
    """wg-quick's resolvconf_iface_prefix: "" unless Debian resolvconf is in use."""
    program = shutil.which("resolvconf")
    if not INTERFACE_ORDER.is_file() or (program is not None and Path(program).is_symlink()):
        return ""
    for line in INTERFACE_ORDER.read_text().splitlines():
        match = _WILDCARD.fullmatch(line.strip())
        if match:
            return f"{match.group(1)}."
    return ""


def fragment(servers: list[str], search: list[str]) -> str:
    text = "".join(f"nameserver {server}\n" for server in servers)
    if search:
        text += f"search {' '.join(search)}\n"
    return text


def set_dns(ifname: str, servers: list[str], search: list[str]) -> None:
    record = record_prefix() + ifname
    log.action(f"resolvconf -a {record} -m 0 -x")
    try:
        result = subprocess.run(
            ["resolvconf", "-a", record, "-m", "0", "-x"],
            input=fragment(servers, search),
            check=False,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise QuickError("resolvconf: command not found") from None
    if result.returncode != 0:
        raise QuickError(f"resolvconf failed: {result.stderr.strip()}")


def unset_dns(ifname: str) -> None:
    record = record_prefix() + ifname
    log.action(f"resolvconf -d {record} -f")
    try:
        subprocess.run(
            ["resolvconf", "-d", record, "-f"], check=False, capture_output=True, text=True
        )
    except FileNotFoundError:
        pass


def current_servers(ifname: str) -> list[str]:
    """The nameservers resolvconf holds for us (for `save`), as wg-quick reads them back."""
    record = record_prefix() + ifname
    text = ""
    try:
        result = subprocess.run(
            ["resolvconf", "-l", record], check=False, capture_output=True, text=True
        )
        if result.returncode == 0:
            text = result.stdout
    except FileNotFoundError:
        pass
    if not text:
        try:
            text = Path("/etc/resolvconf/run/interface", record).read_text()
        except OSError:
            text = ""
    servers = []
    for line in text.splitlines():
        match = re.fullmatch(r"nameserver ([a-zA-Z0-9_=+:%.-]+)", line)
        if match:
            servers.append(match.group(1))
    return servers
