"""`wgpy doctor`: the production checklist and the usual causes of "it doesn't work".

Theory of operation: `Subject` joins what the config file says and what the running interface
reports (peers matched by public key, names from `# friendly_name =` comments); `HostView`
(system.py) holds what the namespace says (routes, sysctls, firewall, file modes). Each check is
a pure function of the two returning `Finding`s — `ok`, `warn` or `fail` with the fix in one
line, or `skip` when its input is missing (no config, interface not running). The exit status
is 1 when any finding is `fail`.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from wgpy import keys
from wgpy.conf import Config
from wgpy.conf.disabled import is_disabled_line
from wgpy.conf.values import split_endpoint
from wgpy.model import DeviceState, IPNetwork, PeerState
from wgpy.ops import firewall
from wgpy.ops.serverconf import peer_name
from wgpy.ops.system import INTERNET_PROBE, HostView, RouteProbes

REJECT_AFTER_TIME = 180  # seconds: a session older than this is dead (whitepaper 6.1)
WG_OVERHEAD_V6 = 80  # outer IPv6 40 + UDP 8 + WireGuard 32
IPV6_MIN_MTU = 1280


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass
class Finding:
    check: str
    status: Status
    message: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


@dataclass
class PeerView:
    public_key: bytes
    name: str | None = None
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    endpoint_host: str | None = None  # literal IP, or a host name from the config
    preshared_key: bool = False
    keepalive: int = 0
    live: PeerState | None = None
    in_config: bool = False

    @property
    def label(self) -> str:
        short = keys.key_to_base64(self.public_key)[:10] + "..."
        return f"{self.name} ({short})" if self.name else short


@dataclass
class Subject:
    ifname: str | None
    config: Config | None
    config_path: str | None
    live: DeviceState | None
    peers: list[PeerView] = field(default_factory=list)
    key_files: list[str] = field(default_factory=list)

    @property
    def private_key(self) -> bytes | None:
        if self.config is not None and self.config.interface.private_key is not None:
            return self.config.interface.private_key
        return self.live.private_key if self.live is not None else None

    @property
    def listen_port(self) -> int | None:
        if self.live is not None and self.live.listen_port:
            return self.live.listen_port
        return self.config.interface.listen_port if self.config is not None else None

    @property
    def hooks(self) -> list[str]:
        if self.config is None:
            return []
        section = self.config.interface
        return [*section.pre_up, *section.post_up]

    @property
    def subnets(self) -> list[IPNetwork]:
        if self.config is None:
            return []
        return [address.network for address in self.config.interface.addresses]


_KEY_FILE_RE = re.compile(r"\b(?:private-key|preshared-key)\s+(\S+)")


def build_subject(ifname: str | None, config: Config | None, config_path: str | None,
                  live: DeviceState | None) -> Subject:
    subject = Subject(ifname, config, config_path, live)
    by_key: dict[bytes, PeerView] = {}
    for peer in config.peers if config is not None else []:
        host = None
        if peer.endpoint:
            try:
                host = split_endpoint(peer.endpoint)[0]
            except ValueError:
                host = None
        configured = PeerView(peer.public_key, peer_name(peer), list(peer.allowed_ips), host,
                              peer.preshared_key is not None and any(peer.preshared_key),
                              peer.persistent_keepalive or 0, in_config=True)
        by_key.setdefault(peer.public_key, configured)
        subject.peers.append(configured)
    for state in live.peers if live is not None else []:
        known = by_key.get(state.public_key)
        if known is None:
            known = PeerView(state.public_key, None, list(state.allowed_ips))
            subject.peers.append(known)
            by_key[state.public_key] = known
        view = known
        view.live = state
        view.preshared_key = view.preshared_key or any(state.preshared_key)
        view.keepalive = view.keepalive or state.persistent_keepalive
        if state.endpoint is not None:
            view.endpoint_host = state.endpoint[0]
        if not view.allowed_ips:
            view.allowed_ips = list(state.allowed_ips)
    for hook in subject.hooks:
        subject.key_files += _KEY_FILE_RE.findall(hook)
    return subject


Check = Callable[[Subject, HostView], list[Finding]]
CHECKS: list[tuple[str, Check]] = []


def check(name: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        CHECKS.append((name, function))
        return function
    return register


def _ok(name: str, message: str) -> list[Finding]:
    return [Finding(name, Status.OK, message)]


def _is_host(network: IPNetwork) -> bool:
    return network.prefixlen == network.max_prefixlen


def _overlaps(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]


# -- keys and files -------------------------------------------------------------------------------


@check("file-mode")
def check_file_modes(subject: Subject, host: HostView) -> list[Finding]:
    paths = ([subject.config_path] if subject.config_path else []) + subject.key_files
    findings = []
    for path in paths:
        mode = host.file_modes.get(path)
        if mode is None:
            continue
        if mode & 0o077:
            findings.append(Finding("file-mode", Status.FAIL,
                                    f"{path} is {mode:04o}: others can read its keys",
                                    f"chmod 600 {path}"))
    return findings or _ok("file-mode", "config and key files are 0600")


@check("own-key-as-peer")
def check_own_key(subject: Subject, host: HostView) -> list[Finding]:
    private = subject.private_key
    if private is None:
        return [Finding("own-key-as-peer", Status.SKIP, "no private key known")]
    own = keys.public_key(private)
    findings = [
        Finding("own-key-as-peer", Status.FAIL,
                f"peer {peer.label} is this interface's own public key",
                "remove that [Peer]: it must hold the other side's public key")
        for peer in subject.peers if peer.public_key == own
    ]
    return findings or _ok("own-key-as-peer", "no peer has this interface's own key")


@check("private-key-as-public")
def check_private_as_public(subject: Subject, host: HostView) -> list[Finding]:
    private = subject.private_key
    if private is None:
        return [Finding("private-key-as-public", Status.SKIP, "no private key known")]
    findings = [
        Finding("private-key-as-public", Status.FAIL,
                f"peer {peer.label}'s PublicKey is this interface's PRIVATE key",
                "generate a new key pair now (wg genkey) and give the peer the public key "
                "(wg pubkey), never the private one")
        for peer in subject.peers if hmac.compare_digest(peer.public_key, private)
    ]
    return findings or _ok("private-key-as-public", "no private key pasted as a peer's key")


@check("duplicate-peer")
def check_duplicate_peers(subject: Subject, host: HostView) -> list[Finding]:
    if subject.config is None:
        return [Finding("duplicate-peer", Status.SKIP, "no config")]
    lines: dict[bytes, list[int]] = {}
    for peer in subject.config.peers:
        lines.setdefault(peer.public_key, []).append(peer.line)
    findings = []
    for key, numbers in lines.items():
        if len(numbers) < 2:
            continue
        where = ", ".join(str(n) for n in numbers)
        findings.append(Finding(
            "duplicate-peer", Status.FAIL,
            f"[Peer] sections at lines {where} of {subject.config_path} have the same "
            f"PublicKey {keys.key_to_base64(key)[:10]}...: they are one peer, and each later "
            "section replaces the earlier one's AllowedIPs when the config is applied",
            "merge them into one [Peer] section"))
    return findings or _ok("duplicate-peer", "every [Peer] has its own PublicKey")


@check("allowed-ips-overlap")
def check_allowed_ips_overlap(subject: Subject, host: HostView) -> list[Finding]:
    findings = []
    peers = subject.peers
    for i, first in enumerate(peers):
        for second in peers[i + 1:]:
            for a in first.allowed_ips:
                for b in second.allowed_ips:
                    if a == b:
                        findings.append(Finding(
                            "allowed-ips-overlap", Status.FAIL,
                            f"{a} is in the AllowedIPs of both {first.label} and {second.label}",
                            f"keep {a} on one peer only: the last one configured takes it "
                            "from the other"))
                    elif _overlaps(a, b):
                        wide, narrow = (a, b) if a.prefixlen < b.prefixlen else (b, a)
                        findings.append(Finding(
                            "allowed-ips-overlap", Status.WARN,
                            f"{narrow} ({_owner(narrow, first, second)}) lies inside {wide} "
                            f"({_owner(wide, first, second)})",
                            f"if unintended, remove {narrow} or narrow {wide}; the more "
                            "specific prefix wins"))
    return findings or _ok("allowed-ips-overlap", "no AllowedIPs shared between peers")


def _owner(network: IPNetwork, first: PeerView, second: PeerView) -> str:
    return first.label if network in first.allowed_ips else second.label


# -- routing --------------------------------------------------------------------------------------


@check("route-overlap")
def check_route_overlap(subject: Subject, host: HostView) -> list[Finding]:
    findings = []
    local = [r for r in host.routes
             if r.destination.prefixlen > 0 and r.device != subject.ifname]
    for peer in subject.peers:
        for allowed in peer.allowed_ips:
            if allowed.prefixlen == 0:
                continue  # full tunnel: wg-quick's policy routing keeps more specific routes
            for route in local:
                if not _overlaps(allowed, route.destination):
                    continue
                net = route.destination
                if allowed.prefixlen <= net.prefixlen:
                    halves = list(net.subnets(prefixlen_diff=1)) if not _is_host(net) else [net]
                    findings.append(Finding(
                        "route-overlap", Status.WARN,
                        f"{allowed} of {peer.label} overlaps the local route {net} "
                        f"(dev {route.device}): traffic to {net} stays local",
                        "to send it through the tunnel add the more specific "
                        + " + ".join(str(h) for h in halves)
                        + f" to AllowedIPs (they beat {net}); otherwise remove {allowed}"))
                else:
                    findings.append(Finding(
                        "route-overlap", Status.WARN,
                        f"{allowed} of {peer.label} lies inside the local route {net} "
                        f"(dev {route.device}): those hosts are no longer reachable locally",
                        f"use addresses outside {net} in the tunnel, or accept the shadowing"))
    return findings or _ok("route-overlap", "no AllowedIPs overlap a local route")


def _probe_address(network: IPNetwork) -> str:
    """An address inside network to ask the kernel's route for (not the network address of a
    real subnet, which some routes treat apart)."""
    if network.prefixlen >= network.max_prefixlen - 1:
        return str(network.network_address)
    return str(network.network_address + 1)


def _routed_probes(subject: Subject) -> list[tuple[PeerView, IPNetwork, str]]:
    if subject.live is None or subject.ifname is None:
        return []
    return [(peer, allowed, _probe_address(allowed)) for peer in subject.peers
            for allowed in peer.allowed_ips if allowed.prefixlen > 0]


@check("allowed-ips-routed")
def check_allowed_ips_routed(subject: Subject, host: HostView) -> list[Finding]:
    if subject.live is None or subject.ifname is None:
        return [Finding("allowed-ips-routed", Status.SKIP, "interface not running")]
    findings = []
    for peer, allowed, probe in _routed_probes(subject):
        if probe not in host.route_devices:
            continue
        device = host.route_devices[probe]
        if device == subject.ifname:
            continue
        via = f"by {device}" if device else "nowhere (no route)"
        findings.append(Finding(
            "allowed-ips-routed", Status.WARN,
            f"{allowed} of {peer.label} is not routed to {subject.ifname}: this host's packets "
            f"to {probe} leave {via} (ip route get {probe})",
            f"ip route add {allowed} dev {subject.ifname} (wg-quick adds one route per "
            "AllowedIPs at up; a peer added later with wg set needs it too)"))
    return findings or _ok("allowed-ips-routed",
                           f"every peer's AllowedIPs are routed to {subject.ifname}")


@check("endpoint-in-allowed-ips")
def check_endpoint_loop(subject: Subject, host: HostView) -> list[Finding]:
    findings = []
    for peer in subject.peers:
        if peer.endpoint_host is None:
            continue
        try:
            address = ipaddress.ip_address(peer.endpoint_host.split("%")[0])
        except ValueError:
            continue  # a host name: not resolved here
        for allowed in peer.allowed_ips:
            if allowed.version != address.version or address not in allowed:
                continue
            if allowed.prefixlen == 0:
                continue  # wg-quick's fwmark rule sends the tunnel's own packets around it
            rest = sorted(allowed.address_exclude(ipaddress.ip_network(address)))  # type: ignore[arg-type]
            findings.append(Finding(
                "endpoint-in-allowed-ips", Status.FAIL,
                f"{peer.label}'s endpoint {address} is inside its AllowedIPs {allowed}: "
                "the encrypted packets would be routed into the tunnel itself",
                f"replace {allowed} by {', '.join(str(n) for n in rest)}"
                if len(rest) <= 12 else
                f"add a host route for {address} via your uplink, or drop it from {allowed}"))
    return findings or _ok("endpoint-in-allowed-ips", "no endpoint inside its own AllowedIPs")


def _forwarding_peers(subject: Subject) -> list[tuple[PeerView, IPNetwork]]:
    """Peers that route networks (not single hosts) outside our own tunnel subnets."""
    found = []
    for peer in subject.peers:
        for allowed in peer.allowed_ips:
            if allowed.prefixlen == 0 or _is_host(allowed):
                continue
            if any(allowed.version == s.version and allowed.subnet_of(s)  # type: ignore[arg-type]
                   for s in subject.subnets):
                continue
            found.append((peer, allowed))
    return found


_GATEWAY_HOOK_RE = re.compile(r"MASQUERADE|SNAT|FORWARD|masquerade|snat|forward", re.IGNORECASE)


def _is_gateway(subject: Subject) -> bool:
    return any(_GATEWAY_HOOK_RE.search(hook) for hook in subject.hooks)


@check("ip-forwarding")
def check_forwarding(subject: Subject, host: HostView) -> list[Finding]:
    findings = []
    gateway = _is_gateway(subject)
    forwarding = _forwarding_peers(subject)
    for version, enabled, key in ((4, host.ipv4_forwarding, "net.ipv4.ip_forward"),
                                  (6, host.ipv6_forwarding, "net.ipv6.conf.all.forwarding")):
        if enabled is not False:
            continue
        routed = [f"{allowed} via {peer.label}" for peer, allowed in forwarding
                  if allowed.version == version]
        has_family = any(s.version == version for s in subject.subnets)
        if gateway and has_family:
            findings.append(Finding(
                "ip-forwarding", Status.FAIL,
                f"the config forwards/masquerades (PostUp) but {key} = 0",
                f"sysctl -w {key}=1 (and persist it in /etc/sysctl.d/)"))
        elif routed:
            findings.append(Finding(
                "ip-forwarding", Status.FAIL,
                f"peers route networks through this host ({'; '.join(routed)}) but {key} = 0",
                f"sysctl -w {key}=1 (and persist it in /etc/sysctl.d/)"))
    return findings or _ok("ip-forwarding", "forwarding is on where peers need it")


def _clients(subject: Subject) -> list[PeerView]:
    """Peers that are single tunnel addresses in our subnet: roaming clients of a server."""
    return [peer for peer in subject.peers if peer.allowed_ips and all(
        _is_host(a) and any(a.version == s.version and a.subnet_of(s)  # type: ignore[arg-type]
                            for s in subject.subnets) for a in peer.allowed_ips)]


def _client_source(subject: Subject) -> str | None:
    """An IPv4 tunnel address of a client: where its internet-bound packets come from."""
    for peer in _clients(subject):
        for allowed in peer.allowed_ips:
            if allowed.version == 4:
                return str(allowed.network_address)
    return None


def route_probes(subject: Subject) -> RouteProbes:
    """The route lookups the checks below need answered by the kernel (system.gather)."""
    probes = RouteProbes(subject.ifname)
    source = _client_source(subject)
    if source is not None:
        probes.sources.append(source)
    probes.destinations = [str(address) for _, _, address in _routed_probes(subject)]
    return probes


def _nat_fix(subject: Subject, device: str) -> str:
    subnet = next((s for s in subject.subnets if s.version == 4), None)
    source = f"-s {subnet} " if subnet else ""
    return f"iptables -t nat -A POSTROUTING {source}-o {device} -j MASQUERADE"


@check("masquerade")
def check_masquerade(subject: Subject, host: HostView) -> list[Finding]:
    gateway = _is_gateway(subject) or bool(host.ipv4_forwarding)
    if not (subject.listen_port and _clients(subject) and gateway):
        return _ok("masquerade", "not a forwarding server")
    if host.firewall_text is None:
        return [Finding("masquerade", Status.SKIP, "no firewall tool (nft, iptables) to read")]
    source = _client_source(subject)
    device = host.egress.get(source) if source else None
    device = device or host.default_route_device(4)
    if device is None:
        return [Finding("masquerade", Status.SKIP, "no route to the internet to check against")]
    rules = firewall.source_nat_rules(host.firewall_text)
    if not rules:
        return [Finding(
            "masquerade", Status.FAIL,
            "this server forwards for its clients but no MASQUERADE/SNAT rule exists: their "
            "traffic leaves with tunnel addresses nobody routes back",
            f"{_nat_fix(subject, device)} (e.g. as PostUp)")]
    probe = f"ip route get {INTERNET_PROBE[4]} from {source} iif {subject.ifname}" if source \
        else f"ip route get {INTERNET_PROBE[4]}"
    matching = [rule for rule in rules if rule.matches_interface(device)
                and (source is None or rule.matches_source(source))]
    if matching:
        return _ok("masquerade", f"clients' traffic leaves by {device} ({probe}) and "
                                 f"is masqueraded there ({matching[0].text})")
    named = sorted({f"{'! ' if r.negated else ''}{r.out_interface}"
                    for r in rules if r.out_interface})
    return [Finding(
        "masquerade", Status.FAIL,
        f"clients' traffic leaves by {device} ({probe}) but the MASQUERADE/SNAT rules "
        + (f"only cover -o {', '.join(named)}" if named else "do not match its source")
        + ": it leaves with tunnel addresses nobody routes back",
        f"{_nat_fix(subject, device)} (and fix the PostUp/PostDown rules to say "
        f"-o {device})")]


@check("forward-firewall")
def check_forward_firewall(subject: Subject, host: HostView) -> list[Finding]:
    gateway = _is_gateway(subject) or bool(host.ipv4_forwarding) or bool(host.ipv6_forwarding)
    if not (gateway and (_clients(subject) or _forwarding_peers(subject))):
        return _ok("forward-firewall", "not a forwarding server")
    if host.firewall_text is None:
        return [Finding("forward-firewall", Status.SKIP,
                        "no firewall tool (nft, iptables) to read")]
    if subject.ifname is None:
        return [Finding("forward-firewall", Status.SKIP, "no interface name")]
    findings = []
    seen: set[str] = set()
    for gap in firewall.forward_gaps(host.firewall_text, subject.ifname):
        if gap.rule in seen:
            continue
        seen.add(gap.rule)
        what = (f"packets in from {subject.ifname}" if gap.missing == "from the tunnel"
                else f"replies back to {subject.ifname}")
        findings.append(Finding(
            "forward-firewall", Status.FAIL,
            f"the forward path drops by default ({gap.tool}) and nothing accepts {what}: "
            "clients reach nothing beyond this host", gap.rule))
    return findings or _ok("forward-firewall", f"forwarding from and back to {subject.ifname} "
                                               "is accepted")


@check("firewall-port")
def check_firewall_port(subject: Subject, host: HostView) -> list[Finding]:
    port = subject.listen_port
    if not port:
        return _ok("firewall-port", "no fixed listen port")
    if host.firewall_text is None:
        return [Finding("firewall-port", Status.SKIP, "no firewall tool (nft, iptables) to read")]
    blocking = firewall.blocks_udp_port(host.firewall_text, port)
    if blocking:
        return [Finding(
            "firewall-port", Status.FAIL,
            f"the input firewall drops UDP {port} ({', '.join(blocking)})",
            f"allow it: nft add rule inet filter input udp dport {port} accept "
            f"(or iptables -I INPUT -p udp --dport {port} -j ACCEPT)")]
    return _ok("firewall-port", f"UDP {port} is not dropped by the input firewall")


# -- peers ----------------------------------------------------------------------------------------


@check("never-handshaked")
def check_never_handshaked(subject: Subject, host: HostView) -> list[Finding]:
    if subject.live is None:
        return [Finding("never-handshaked", Status.SKIP, "interface not running")]
    findings = []
    for peer in subject.peers:
        if peer.live is None or peer.live.last_handshake_sec:
            continue
        if peer.live.endpoint is None:
            findings.append(Finding(
                "never-handshaked", Status.WARN,
                f"{peer.label} never connected, and we have no endpoint for it: only it can "
                "start the handshake",
                "check its config; behind NAT set PersistentKeepalive = 25 on its side"))
        else:
            findings.append(Finding(
                "never-handshaked", Status.WARN,
                f"{peer.label} never completed a handshake with {peer.live.endpoint[0]}",
                "check the peer's keys, its endpoint reachability and its firewall"))
    return findings or _ok("never-handshaked", "every peer has handshaked")


@check("stale-handshake")
def check_stale(subject: Subject, host: HostView) -> list[Finding]:
    if subject.live is None:
        return [Finding("stale-handshake", Status.SKIP, "interface not running")]
    findings = []
    for peer in subject.peers:
        state = peer.live
        if state is None or not state.last_handshake_sec:
            continue
        age = int(host.now - state.last_handshake_sec)
        expected = state.persistent_keepalive or state.endpoint is not None
        if age > REJECT_AFTER_TIME and expected:
            findings.append(Finding(
                "stale-handshake", Status.WARN,
                f"{peer.label}: last handshake {age} s ago (> {REJECT_AFTER_TIME} s)",
                "the peer is down or unreachable; check its endpoint and firewall"))
    return findings or _ok("stale-handshake", "no stale handshakes")


@check("preshared-key")
def check_psk(subject: Subject, host: HostView) -> list[Finding]:
    findings = [
        Finding("preshared-key", Status.WARN, f"{peer.label} has no PresharedKey",
                "add one on both sides (wg genpsk): a layer of post-quantum resistance")
        for peer in subject.peers if not peer.preshared_key
    ]
    return findings or _ok("preshared-key", "every peer has a PresharedKey")


@check("dns-leak")
def check_dns(subject: Subject, host: HostView) -> list[Finding]:
    if subject.config is None:
        return [Finding("dns-leak", Status.SKIP, "no config")]
    full_tunnel = any(a.prefixlen == 0 for peer in subject.peers for a in peer.allowed_ips)
    interface = subject.config.interface
    if full_tunnel and not (interface.dns_servers or interface.dns_search):
        return [Finding("dns-leak", Status.WARN,
                        "full tunnel without DNS: queries still go to the local resolver",
                        "add DNS = <resolver reached through the tunnel> to [Interface]")]
    return _ok("dns-leak", "DNS set or not a full tunnel")


@check("mtu")
def check_mtu(subject: Subject, host: HostView) -> list[Finding]:
    mtu = subject.config.interface.mtu if subject.config is not None else None
    if mtu is None and subject.ifname:
        mtu = host.link_mtus.get(subject.ifname)
    if mtu is None:
        return [Finding("mtu", Status.SKIP, "no MTU known")]
    findings = []
    has_v6 = any(s.version == 6 for s in subject.subnets)
    if has_v6 and mtu < IPV6_MIN_MTU:
        findings.append(Finding("mtu", Status.FAIL,
                                f"MTU {mtu} is below IPv6's minimum {IPV6_MIN_MTU}",
                                f"set MTU = {IPV6_MIN_MTU} or more (1420 is the usual)"))
    uplink = host.default_route_device(4) or host.default_route_device(6)
    uplink_mtu = host.link_mtus.get(uplink) if uplink else None
    if uplink_mtu is not None and mtu + WG_OVERHEAD_V6 > uplink_mtu:
        findings.append(Finding(
            "mtu", Status.WARN,
            f"MTU {mtu} + {WG_OVERHEAD_V6} bytes of WireGuard/UDP/IPv6 overhead exceeds "
            f"{uplink}'s MTU {uplink_mtu}: large packets fragment or vanish",
            f"set MTU = {uplink_mtu - WG_OVERHEAD_V6}"))
    return findings or _ok("mtu", f"MTU {mtu} fits")


@check("save-config")
def check_save_config(subject: Subject, host: HostView) -> list[Finding]:
    config = subject.config
    if config is None:
        return [Finding("save-config", Status.SKIP, "no config")]
    if not config.interface.save_config:
        return _ok("save-config", "SaveConfig is off: the file is only changed by hand")
    comments = [line for section in [config.interface, *config.peers]
                for line in section.source if line.key is None and line.text.lstrip().startswith("#")]
    comments = [*(line for line in config.preamble if line.text.lstrip().startswith("#")),
                *comments]
    if not comments:
        return _ok("save-config", "SaveConfig = true on a file without comments")
    numbers = sorted(line.number for line in comments)
    shown = ", ".join(str(n) for n in numbers[:8]) + (", ..." if len(numbers) > 8 else "")
    disabled = sum(1 for line in comments if is_disabled_line(line.text))
    lost = (f" ({disabled} of them a disabled peer, which would be gone for good)"
            if disabled else "")
    return [Finding(
        "save-config", Status.WARN,
        f"SaveConfig = true: wg-quick's down/save rewrites {subject.config_path} from the "
        f"running interface and drops its comments: {len(comments)} "
        f"line{'s' if len(comments) > 1 else ''} ({shown}){lost}: peer names, the remembered "
        "endpoint, notes",
        "bring the interface up and down with wgpy-quick, whose save merges the running "
        "state into the file and keeps comments of peers that still exist; or set SaveConfig "
        "= false and change peers with wgpy add-peer/remove-peer/disable-peer, which edit "
        "the file in place")]


# -- running ---------------------------------------------------------------------------------------


def run_checks(subject: Subject, host: HostView,
               only: Iterable[str] | None = None) -> list[Finding]:
    wanted = set(only) if only is not None else None
    findings: list[Finding] = []
    for name, function in CHECKS:
        if wanted is None or name in wanted:
            findings.extend(function(subject, host))
    return findings


def has_failures(findings: Iterable[Finding]) -> bool:
    return any(f.status is Status.FAIL for f in findings)


def format_text(findings: list[Finding], title: str) -> str:
    lines = [f"{title}"]
    for finding in findings:
        lines.append(f"  {finding.status.value.upper():4}  {finding.check:24} {finding.message}")
        if finding.fix and finding.status in (Status.WARN, Status.FAIL):
            lines.append(f"        {'':24} fix: {finding.fix}")
    return "".join(line + "\n" for line in lines)
