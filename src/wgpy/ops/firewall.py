"""Reading firewall rule dumps (`nft list ruleset`, `iptables-save`) for doctor's two questions:
is there a MASQUERADE/SNAT rule, and would the input path drop a UDP port?

The dumps are read, never changed. The answers are deliberately simple: an input path
"blocks" when its policy is drop (nft `policy drop;`, iptables `:INPUT DROP`) or it ends in a
rule that drops or rejects everything; a port counts as allowed when some accept rule of that
path matches UDP (or any protocol) and names the port, a range or a set containing it.
"""

from __future__ import annotations

import re

_NAT_RE = re.compile(r"\bMASQUERADE\b|\bSNAT\b|\bmasquerade\b|\bsnat\b")
_SECTION_RE = re.compile(r"^### (.+)$", re.MULTILINE)


def sections(firewall_text: str) -> list[tuple[str, str]]:
    """(tool, dump) pairs of the text system.read_firewall assembled."""
    parts = _SECTION_RE.split(firewall_text)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def has_source_nat(firewall_text: str) -> bool:
    return any(
        _NAT_RE.search(line) and not line.lstrip().startswith("#")
        for line in firewall_text.splitlines()
    )


def _port_in(spec: str, port: int) -> bool:
    """'51820', '51820-51830', '51820:51830', '{ 22, 51820 }', '22,51820'."""
    for item in re.split(r"[\s,{}]+", spec):
        span = re.fullmatch(r"(\d+)[-:](\d+)", item)
        if span is not None and int(span.group(1)) <= port <= int(span.group(2)):
            return True
        if item.isdigit() and int(item) == port:
            return True
    return False


# -- nft ------------------------------------------------------------------------------------------


def _nft_input_chains(dump: str) -> list[list[str]]:
    chains: list[list[str]] = []
    current: list[str] | None = None
    for raw in dump.splitlines():
        line = raw.strip()
        if line.startswith("chain ") and line.endswith("{"):
            current = []
            continue
        if current is not None:
            if line == "}":
                if any("hook input" in item for item in current):
                    chains.append(current)
                current = None
            else:
                current.append(line)
    return chains


def _nft_blocks_udp_port(dump: str, port: int) -> bool:
    for chain in _nft_input_chains(dump):
        rules = [line for line in chain if line and "hook input" not in line]
        policy_drop = any("hook input" in line and "policy drop" in line for line in chain)
        catch_all = any(re.fullmatch(r"(counter( packets \d+ bytes \d+)? )?(drop|reject.*)", r)
                        for r in rules)
        if not (policy_drop or catch_all):
            continue
        allowed = False
        for rule in rules:
            match = re.search(r"\bdport\s+(\{[^}]*\}|\S+)", rule)
            if not rule.endswith("accept") or match is None:
                continue
            if "tcp dport" in rule and "udp" not in rule:
                continue
            if _port_in(match.group(1), port):
                allowed = True
        if not allowed:
            return True
    return False


# -- iptables-save --------------------------------------------------------------------------------


def _iptables_blocks_udp_port(dump: str, port: int) -> bool:
    in_filter = False
    policy_drop = False
    catch_all = False
    allowed = False
    for raw in dump.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            in_filter = line == "*filter"
            continue
        if not in_filter:
            continue
        if line.startswith(":INPUT "):
            policy_drop = line.split()[1] in ("DROP", "REJECT")
        elif line.startswith("-A INPUT "):
            words = line.split()
            if words[2:] in (["-j", "DROP"], ["-j", "REJECT"]) or (
                words[2:4] == ["-j", "REJECT"]
            ):
                catch_all = True
                continue
            if "-j" in words and words[words.index("-j") + 1] == "ACCEPT" and not catch_all:
                protocol = words[words.index("-p") + 1] if "-p" in words else "all"
                if protocol not in ("udp", "all", "17"):
                    continue
                for option in ("--dport", "--dports", "--destination-port"):
                    if option in words and _port_in(words[words.index(option) + 1], port):
                        allowed = True
    return (policy_drop or catch_all) and not allowed


def blocks_udp_port(firewall_text: str, port: int) -> list[str]:
    """The tools whose rules would drop incoming UDP to port (empty: none would)."""
    blocking = []
    for tool, dump in sections(firewall_text):
        if tool.startswith("nft"):
            blocked = _nft_blocks_udp_port(dump, port)
        else:
            blocked = _iptables_blocks_udp_port(dump, port)
        if blocked:
            blocking.append(tool)
    return blocking
