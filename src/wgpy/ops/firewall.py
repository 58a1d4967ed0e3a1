"""Reading firewall rule dumps (`nft list ruleset`, `iptables-save`) for doctor's questions:
which MASQUERADE/SNAT rules exist and for which output interface, would the input path drop a
UDP port, and does a forward path that drops by default accept both traffic from the tunnel and
the replies back to it?

The dumps are read, never changed. The answers are deliberately simple: an input path
"blocks" when its policy is drop (nft `policy drop;`, iptables `:INPUT DROP`) or it ends in a
rule that drops or rejects everything; a port counts as allowed when some accept rule of that
path matches UDP (or any protocol) and names the port, a range or a set containing it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

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


# -- source NAT: which rules, for which output interface -----------------------------------------


@dataclass
class NatRule:
    """One MASQUERADE/SNAT rule: the output interface it is limited to (None: any; a trailing
    `+` or `*` is a prefix wildcard), whether that match is negated, and its source network."""

    tool: str
    text: str
    out_interface: str | None
    negated: bool = False
    source: str | None = None

    def matches_interface(self, device: str) -> bool:
        if self.out_interface is None:
            return True
        pattern = self.out_interface
        if pattern.endswith(("+", "*")):
            hit = device.startswith(pattern[:-1])
        else:
            hit = device == pattern
        return hit != self.negated

    def matches_source(self, address: str) -> bool:
        if self.source is None:
            return True
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.source, strict=False)
        except ValueError:
            return True  # a set or a name we do not evaluate: do not claim it misses


def _word_after(words: list[str], *options: str) -> tuple[str | None, bool]:
    for option in options:
        if option in words:
            at = words.index(option)
            if at + 1 < len(words):
                return words[at + 1], at > 0 and words[at - 1] == "!"
    return None, False


def _iptables_nat_rules(tool: str, dump: str) -> list[NatRule]:
    rules = []
    table = ""
    for raw in dump.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table != "nat" or not line.startswith("-A "):
            continue
        words = line.split()
        target, _ = _word_after(words, "-j", "--jump")
        if target not in ("MASQUERADE", "SNAT"):
            continue
        out, negated = _word_after(words, "-o", "--out-interface")
        source, _ = _word_after(words, "-s", "--source")
        rules.append(NatRule(tool, line, out, negated, source))
    return rules


_NFT_OIF_RE = re.compile(r'\boif(?:name)?\s+(!=\s+)?"?([^"\s]+)"?')
_NFT_SADDR_RE = re.compile(r"\bip6?\s+saddr\s+(!=\s+)?([0-9a-fA-F.:/]+)")


def _nft_chains(dump: str) -> Iterator[tuple[str, str, list[str]]]:
    """(table, chain, lines) of an `nft list ruleset` dump; table is 'FAMILY NAME'."""
    table = ""
    chain: str | None = None
    lines: list[str] = []
    for raw in dump.splitlines():
        line = raw.strip()
        if line.startswith("table ") and line.endswith("{"):
            table = line[len("table "):-1].strip()
        elif line.startswith("chain ") and line.endswith("{"):
            chain, lines = line[len("chain "):-1].strip(), []
        elif chain is not None and line == "}":
            yield table, chain, lines
            chain = None
        elif chain is not None and line and not line.startswith("#"):
            lines.append(line)


def _nft_nat_rules(tool: str, dump: str) -> list[NatRule]:
    rules = []
    for _table, _chain, lines in _nft_chains(dump):
        for line in lines:
            if not re.search(r"\b(masquerade|snat)\b", line) or line.startswith("type "):
                continue
            oif = _NFT_OIF_RE.search(line)
            saddr = _NFT_SADDR_RE.search(line)
            rules.append(NatRule(tool, line, oif.group(2) if oif else None,
                                 bool(oif and oif.group(1)),
                                 saddr.group(2) if saddr and not saddr.group(1) else None))
    return rules


def source_nat_rules(firewall_text: str) -> list[NatRule]:
    rules: list[NatRule] = []
    for tool, dump in sections(firewall_text):
        if tool.startswith("nft"):
            rules += _nft_nat_rules(tool, dump)
        else:
            rules += _iptables_nat_rules(tool, dump)
    return rules


# -- forwarding: is traffic from the tunnel, and back to it, accepted? ----------------------------


@dataclass
class ForwardGap:
    """A forward path that drops by default and lacks one of the two directions."""

    tool: str
    missing: str  # "from the tunnel" or "back to the tunnel"
    rule: str  # the command that adds what is missing


_ESTABLISHED_RE = re.compile(r"\bestablished\b", re.IGNORECASE)


def _iptables_forward_gaps(tool: str, dump: str, ifname: str) -> list[ForwardGap]:
    """FORWARD of the filter table, and the chains it jumps to (ufw's, Docker's): accept
    rules there count; the policy and a catch-all drop in FORWARD itself make it restrictive."""
    command = "ip6tables" if tool.startswith("ip6tables") else "iptables"
    table = ""
    restrictive = False
    chains: dict[str, list[list[str]]] = {}
    for raw in dump.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table != "filter":
            continue
        if line.startswith(":FORWARD "):
            restrictive = line.split()[1] in ("DROP", "REJECT")
        elif line.startswith("-A "):
            words = line.split()
            chains.setdefault(words[1], []).append(words)
    inbound = outbound = False
    for chain in _reachable("FORWARD", {name: [_word_after(w, "-j", "--jump")[0] or ""
                                               for w in rules] for name, rules in chains.items()}):
        for words in chains.get(chain, []):
            target, _ = _word_after(words, "-j", "--jump")
            if chain == "FORWARD" and target in ("DROP", "REJECT") and \
                    words[2] in ("-j", "--jump"):
                restrictive = True  # a catch-all drop: no match before the target
                continue
            if target != "ACCEPT":
                continue
            iif, iif_not = _word_after(words, "-i", "--in-interface")
            oif, oif_not = _word_after(words, "-o", "--out-interface")
            stateful = bool(_ESTABLISHED_RE.search(" ".join(words)))
            if iif is not None and not iif_not and _interface_is(iif, ifname):
                inbound = True
            if oif is not None and not oif_not and _interface_is(oif, ifname):
                outbound = True
            if iif is None and oif is None:
                if stateful:
                    outbound = True  # replies to any connection, the tunnel's included
                elif not {"-m", "-p", "-s", "-d"} & set(words):
                    inbound = outbound = True
    return _gaps(tool, restrictive, inbound, outbound, (
        f"{command} -A FORWARD -i {ifname} -j ACCEPT",
        f"{command} -A FORWARD -o {ifname} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"))


def _reachable(start: str, jumps: dict[str, list[str]]) -> list[str]:
    """start and every chain reachable from it by jumps (each once)."""
    seen = [start]
    for chain in seen:
        for target in jumps.get(chain, []):
            if target in jumps and target not in seen:
                seen.append(target)
    return seen


def _interface_is(pattern: str, ifname: str) -> bool:
    pattern = pattern.strip('"')
    if pattern.endswith(("+", "*")):
        return ifname.startswith(pattern[:-1])
    return pattern == ifname


# iptables-nft keeps its rules in these nft tables; iptables-save shows them too, and its
# command is the one to fix them with.
_IPTABLES_NFT_TABLES = frozenset({("ip filter", "FORWARD"), ("ip6 filter", "FORWARD")})


_NFT_JUMP_RE = re.compile(r"\b(?:jump|goto)\s+(\S+)")


def _nft_forward_gaps(tool: str, dump: str, ifname: str,
                      skip: frozenset[tuple[str, str]] = frozenset()) -> list[ForwardGap]:
    """Chains hooked at forward, and the chains of the same table they jump to."""
    tables: dict[str, dict[str, list[str]]] = {}
    for table, chain, lines in _nft_chains(dump):
        tables.setdefault(table, {})[chain] = lines
    gaps: list[ForwardGap] = []
    for table, chains in tables.items():
        for chain, lines in chains.items():
            header = next((line for line in lines if line.startswith("type ")), "")
            if "hook forward" not in header or (table, chain) in skip:
                continue
            rules = [line for line in lines if not line.startswith("type ")]
            restrictive = "policy drop" in header or any(
                re.fullmatch(r"(counter( packets \d+ bytes \d+)? )?(drop|reject.*)", r)
                for r in rules)
            jumps = {name: _NFT_JUMP_RE.findall(" ".join(body)) for name, body in chains.items()}
            reachable = [line for name in _reachable(chain, jumps)
                         for line in (rules if name == chain else chains[name])]
            inbound, outbound = _nft_accepts(reachable, ifname)
            gaps += _gaps(tool, restrictive, inbound, outbound, (
                f'nft add rule {table} {chain} iifname "{ifname}" accept',
                (f'nft add rule {table} {chain} oifname "{ifname}" '
                 "ct state established,related accept")))
    return gaps


def _nft_accepts(rules: list[str], ifname: str) -> tuple[bool, bool]:
    """(traffic in from ifname accepted, replies back to it accepted)."""
    inbound = outbound = False
    for rule in rules:
        if re.search(r"\bct state vmap\b", rule):
            if re.search(r"\bestablished\s*:\s*accept\b", rule):
                outbound = True
            continue
        if not rule.endswith("accept"):
            continue
        iif = re.search(r'\biif(?:name)?\s+(!=\s+)?"?([^"\s]+)"?', rule)
        oif = _NFT_OIF_RE.search(rule)
        if iif and not iif.group(1) and _interface_is(iif.group(2), ifname):
            inbound = True
        if oif and not oif.group(1) and _interface_is(oif.group(2), ifname):
            outbound = True
        if not iif and not oif and re.search(r"\bct state\b", rule) and \
                _ESTABLISHED_RE.search(rule):
            outbound = True
        if re.fullmatch(r"(counter( packets \d+ bytes \d+)? )?accept", rule):
            inbound = outbound = True
    return inbound, outbound


def _gaps(tool: str, restrictive: bool, inbound: bool, outbound: bool,
          rules: tuple[str, str]) -> list[ForwardGap]:
    if not restrictive:
        return []
    gaps = []
    if not inbound:
        gaps.append(ForwardGap(tool, "from the tunnel", rules[0]))
    if not outbound:
        gaps.append(ForwardGap(tool, "back to the tunnel", rules[1]))
    return gaps


def forward_gaps(firewall_text: str, ifname: str) -> list[ForwardGap]:
    """Where a forward path drops by default and misses traffic from ifname or the replies
    back to it (empty: both directions are accepted wherever forwarding is restricted)."""
    gaps: list[ForwardGap] = []
    parts = sections(firewall_text)
    iptables_too = any(not tool.startswith("nft") for tool, _ in parts)
    for tool, dump in parts:
        if tool.startswith("nft"):
            gaps += _nft_forward_gaps(tool, dump, ifname,
                                      _IPTABLES_NFT_TABLES if iptables_too else frozenset())
        else:
            gaps += _iptables_forward_gaps(tool, dump, ifname)
    return gaps
