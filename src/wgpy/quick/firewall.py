"""The nftables rules wg-quick adds with a default route, and their removal.

With everything routed into the tunnel, two things must hold (wg-quick(8), "Table"):
- anti-spoofing: a packet arriving on another interface but addressed to the tunnel's own
  address is dropped unless its source is local (`preraw`), so nobody on the LAN can inject
  traffic that looks like it came through the tunnel;
- the fwmark the device puts on its encrypted UDP packets is copied into conntrack on the way
  out and restored on replies (`postmangle` / `premangle`), so replies to the endpoint also
  match the `not fwmark` rule and do not loop back into the tunnel.
One table per address family, named `wg-quick-IFNAME` (the same name wg-quick uses, so either
tool can clean up after the other). Without the nft tool, the same rules go in through
iptables-restore, marked with wg-quick's comment "wg-quick(8) rule for IFNAME".
"""

from __future__ import annotations

import shutil
import subprocess

from wgpy.model import IPInterface
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


def iptables_ruleset(ifname: str, version: int, fwmark: int, addresses: list[IPInterface]) -> str:
    """The same rules as `iptables-restore -n` input, for hosts without the nft tool."""
    marker = f'-m comment --comment "{iptables_comment(ifname)}"'
    lines = ["*raw"]
    for address in addresses:
        if address.version == version:
            lines.append(
                f"-I PREROUTING ! -i {ifname} -d {address.ip} -m addrtype ! --src-type LOCAL "
                f"-j DROP {marker}"
            )
    lines += [
        "COMMIT",
        "*mangle",
        f"-I POSTROUTING -m mark --mark {fwmark} -p udp -j CONNMARK --save-mark {marker}",
        f"-I PREROUTING -p udp -j CONNMARK --restore-mark {marker}",
        "COMMIT",
    ]
    return "".join(line + "\n" for line in lines)


def iptables_comment(ifname: str) -> str:
    return f"wg-quick(8) rule for {ifname}"


def _iptables(version: int) -> str:
    return "ip6tables" if version == 6 else "iptables"


def nft_available() -> bool:
    return shutil.which("nft") is not None


def _run(argv: list[str], script: str) -> None:
    result = subprocess.run(argv, input=script, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise QuickError(f"{argv[0]} failed: {result.stderr.strip()}")


def install(ifname: str, version: int, fwmark: int, addresses: list[IPInterface]) -> None:
    """nft when the tool is there, else iptables-restore (wg-quick's order of preference)."""
    if nft_available():
        log.action("nft -f /dev/fd/63")
        _run(["nft", "-f", "-"], ruleset(ifname, version, fwmark, addresses))
        return
    restore = f"{_iptables(version)}-restore"
    if shutil.which(restore) is None:
        raise QuickError("a default route through the tunnel needs nft or iptables-restore")
    log.action(f"{restore} -n")
    _run([restore, "-n"], iptables_ruleset(ifname, version, fwmark, addresses))


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


def remove(ifname: str, version: int | None = None) -> None:
    """Delete our nft tables and iptables rules (both families, or only `version`)."""
    families = {4: "ip", 6: "ip6"}
    tables = installed_tables(ifname)
    if version is not None:
        tables = [t for t in tables if t.split()[0] == families[version]]
    if tables:
        log.action("nft -f /dev/fd/63")
        _run(["nft", "-f", "-"], "".join(f"delete table {table}\n" for table in tables))
    for each in (4, 6) if version is None else (version,):
        _remove_iptables_rules(ifname, _iptables(each))


def _remove_iptables_rules(ifname: str, iptables: str) -> None:
    """Replay `iptables-save` with our rules turned from -A into -D (as wg-quick does)."""
    if shutil.which(f"{iptables}-save") is None or shutil.which(f"{iptables}-restore") is None:
        return
    saved = subprocess.run(
        [f"{iptables}-save"], check=False, capture_output=True, text=True
    ).stdout
    marker = f'-m comment --comment "{iptables_comment(ifname)}"'
    restore, found = [], False
    for line in saved.splitlines():
        if line.startswith("-A ") and marker in line:
            restore.append("-D" + line[2:])
            found = True
        elif line.startswith("*") or line == "COMMIT":
            restore.append(line)
    if found:
        log.action(f"{iptables}-restore -n")
        _run([f"{iptables}-restore", "-n"], "".join(line + "\n" for line in restore))
