"""The nftables rules wg-quick adds with a default route, and their removal.

With everything routed into the tunnel, two things must hold (wg-quick(8), "Table"):
- anti-spoofing: a packet arriving on another interface but addressed to the tunnel's own
  address is dropped unless its source is local (`preraw`), so nobody on the LAN can inject
  traffic that looks like it came through the tunnel;
- the fwmark the device puts on its encrypted UDP packets is copied into conntrack on the way
  out and restored on replies (`postmangle` / `premangle`), so replies to the endpoint also
  match the `not fwmark` rule and do not loop back into the tunnel.
One table per address family, named `wg-quick-IFNAME` (the same name wg-quick uses, so either
tool can clean up after the other).
"""

from __future__ import annotations

import shutil
import subprocess

from wgpy.control.netlink import IPInterface
from wgpy.quick import log
from wgpy.quick.config import QuickError


def table_name(ifname: str) -> str:
    return f"wg-quick-{ifname}"


def ruleset(ifname: str, version: int, fwmark: int, addresses: list[IPInterface]) -> str:
    """The `nft -f` input that creates the table for one address family."""
    pf = "ip6" if version == 6 else "ip"
    table = table_name(ifname)
    lines = [
        f"add table {pf} {table}",
        f"add chain {pf} {table} preraw {{ type filter hook prerouting priority -300; }}",
        f"add chain {pf} {table} premangle {{ type filter hook prerouting priority -150; }}",
        f"add chain {pf} {table} postmangle {{ type filter hook postrouting priority -150; }}",
    ]
    for address in addresses:
        if address.version != version:
            continue
        lines.append(
            f'add rule {pf} {table} preraw iifname != "{ifname}" {pf} daddr {address.ip} '
            "fib saddr type != local drop"
        )
    lines.append(
        f"add rule {pf} {table} postmangle meta l4proto udp mark {fwmark} ct mark set mark"
    )
    lines.append(f"add rule {pf} {table} premangle meta l4proto udp meta mark set ct mark")
    return "".join(line + "\n" for line in lines)


def nft_available() -> bool:
    return shutil.which("nft") is not None


def _nft(script: str) -> None:
    result = subprocess.run(
        ["nft", "-f", "-"], check=False, input=script, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise QuickError(f"nft failed: {result.stderr.strip()}")


def install(ifname: str, version: int, fwmark: int, addresses: list[IPInterface]) -> None:
    if not nft_available():
        raise QuickError("nft is required for a default route through the tunnel")
    log.action("nft -f /dev/fd/63")
    _nft(ruleset(ifname, version, fwmark, addresses))


def installed_tables(ifname: str) -> list[str]:
    """`FAMILY NAME` of every table of ours, from `nft list tables`."""
    if not nft_available():
        return []
    result = subprocess.run(["nft", "list", "tables"], check=False, capture_output=True, text=True)
    found = []
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and words[2] == table_name(ifname):
            found.append(f"{words[1]} {words[2]}")
    return found


def remove(ifname: str, family_table: str | None = None) -> None:
    """Delete our tables (all families, or just the one named `FAMILY NAME`)."""
    tables = installed_tables(ifname)
    if family_table is not None:
        tables = [t for t in tables if t == family_table]
    if not tables:
        return
    log.action("nft -f /dev/fd/63")
    _nft("".join(f"delete table {table}\n" for table in tables))
