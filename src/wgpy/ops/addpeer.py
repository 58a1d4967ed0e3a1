"""`wgpy add-peer` / `wgpy remove-peer`: one command to give a new device access to a server.

add-peer: load and check the server config, pick the next free address in each of the
interface's subnets, generate the client's keys (and a preshared key), write the server config
(0600, atomically), then add the peer to the running interface; if the live change fails, the
old config is put back. Every input is checked first (the endpoint is HOST:PORT with a host
name, IPv4 or [IPv6]; --dns IP addresses; the name printable; an --address inside one of the
interface's subnets unless --allow-outside-subnet, which adds the route wg-quick up would);
any refusal (also duplicate, full subnet, unparsable config, no endpoint) and any failure to
write the output files happens before anything is written, so it leaves everything as it was.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wgpy import keys
from wgpy.conf import Config, ConfigError, parse_config, values
from wgpy.conf.writer import check_no_control_characters
from wgpy.control.client import DeviceControl
from wgpy.model import (
    DeviceState,
    IPAddress,
    IPInterface,
    IPNetwork,
    PeerSet,
    SetRequest,
    join_host_port,
)
from wgpy.ops import serverconf
from wgpy.ops.serverconf import ServerConfig, peer_name

DEFAULT_CLIENT_ALLOWED_IPS = "0.0.0.0/0, ::/0"
DEFAULT_KEEPALIVE = 25  # a phone or laptop is usually behind NAT


class OpsError(Exception):
    """A refusal with a message for the operator; nothing was changed."""


# -- addresses ------------------------------------------------------------------------------------


def host_network(address: IPAddress) -> IPNetwork:
    return ipaddress.ip_network((address, address.max_prefixlen))


def _first_and_last_host(subnet: IPNetwork) -> tuple[int, int] | None:
    first, last = int(subnet.network_address), int(subnet.broadcast_address)
    if subnet.version == 4:
        if subnet.prefixlen <= 30:
            return first + 1, last - 1  # no network or broadcast address
        return (first, last) if subnet.prefixlen == 31 else None  # RFC 3021 /31; a /32 is full
    if subnet.prefixlen == 128:
        return None
    return first + 1, last  # skip the subnet-router anycast address (RFC 4291 2.6.1)


def next_free_address(subnet: IPNetwork, used: Iterable[IPNetwork]) -> IPAddress | None:
    """The lowest host address of subnet inside none of the used networks (None: full).

    Only used networks inside the subnet count: a peer routing 0.0.0.0/0 does not take the
    subnet's addresses (a /32 for a new peer is more specific and wins).
    """
    bounds = _first_and_last_host(subnet)
    if bounds is None:
        return None
    candidate, last = bounds
    inside = [net for net in used if net.version == subnet.version and net.subnet_of(subnet)]  # type: ignore[arg-type]
    for net in ipaddress.collapse_addresses(inside):  # type: ignore[type-var]
        start, end = int(net.network_address), int(net.broadcast_address)
        if end < candidate:
            continue
        if start > candidate:
            break
        candidate = end + 1
    if candidate > last:
        return None
    return ipaddress.ip_address(candidate)


def used_networks(config: Config, live: DeviceState | None) -> list[IPNetwork]:
    """Everything already taken: the interface's own addresses and every peer's AllowedIPs,
    from the config and from the running interface."""
    used: list[IPNetwork] = [host_network(a.ip) for a in config.interface.addresses]
    for peer in config.peers:
        used.extend(peer.allowed_ips)
    if live is not None:
        for state in live.peers:
            used.extend(state.allowed_ips)
    return used


def allocate_addresses(config: Config, live: DeviceState | None) -> list[IPInterface]:
    """One free host address per address family of the interface (its first subnet of each)."""
    subnets: list[IPNetwork] = []
    for address in config.interface.addresses:
        if all(s.version != address.version for s in subnets):
            subnets.append(address.network)
    if not subnets:
        raise OpsError(
            f"{config.path}: [Interface] has no Address, so there is no subnet to take an "
            "address from; give one with --address"
        )
    used = used_networks(config, live)
    chosen: list[IPInterface] = []
    for subnet in subnets:
        free = next_free_address(subnet, used)
        if free is None:
            raise OpsError(f"subnet {subnet} is full: no free address for a new peer")
        chosen.append(ipaddress.ip_interface((free, free.max_prefixlen)))
    return chosen


def requested_addresses(
    text: str, config: Config, live: DeviceState | None, allow_outside: bool = False
) -> list[IPInterface]:
    """--address CIDR[,CIDR]: inside one of the interface's subnets (unless allow_outside)
    and not already taken."""
    chosen: list[IPInterface] = []
    for item in text.replace(",", " ").split():
        try:
            chosen.append(ipaddress.ip_interface(item))
        except ValueError:
            raise OpsError(f"--address: not an address: {item!r}") from None
    if not chosen:
        raise OpsError("--address: no address given")
    subnets = [a.network for a in config.interface.addresses]
    for address in chosen:
        if not allow_outside and not any(
                address.version == s.version and address.ip in s for s in subnets):
            inside = ", ".join(str(s) for s in subnets) or "none: [Interface] has no Address"
            raise OpsError(
                f"--address {address.ip} is outside the interface's subnets ({inside}); "
                "give --allow-outside-subnet to add a route for it as wg-quick up does")
    used = used_networks(config, live)
    for address in chosen:
        taken = next((n for n in used if n.version == address.version and host_network(address.ip).overlaps(n)), None)  # type: ignore[arg-type]
        if taken is not None:
            raise OpsError(f"--address {address.ip} is already in use ({taken})")
    return chosen


# -- the client's config --------------------------------------------------------------------------


HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _check_host(host: str) -> str:
    """A host name (RFC 1123 labels), an IPv4 address, or an IPv6 address (unbracketed)."""
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"not an IPv6 address: {host!r}") from None
    if host and all(c in "0123456789." for c in host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"not an IPv4 address: {host!r}") from None
    name = host.removesuffix(".")
    if not name or len(name) > 253 or not all(
            HOSTNAME_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"not a host name or IP address: {host!r}")
    return host


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """(host, port or None) of HOST, HOST:PORT, IPV6, [IPV6] or [IPV6]:PORT; ValueError with
    what is wrong otherwise (an endpoint is written into every client's config)."""
    if text.startswith("["):
        inside, closing, rest = text[1:].partition("]")
        if not closing:
            raise ValueError(f"no closing ']' in {text!r}")
        host = _check_host(inside)
        if ":" not in host:
            raise ValueError(f"only an IPv6 address goes in brackets: {text!r}")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"expected ':PORT' after ']' in {text!r}")
        return host, _check_port(rest[1:], text)
    if text.count(":") > 1:
        try:
            return str(ipaddress.IPv6Address(text)), None
        except ValueError:
            raise ValueError(f"an IPv6 address with a port is written [ADDRESS]:PORT: {text!r}") from None
    host, colon, port = text.partition(":")
    checked = _check_host(host)
    return checked, _check_port(port, text) if colon else None


def _check_port(port: str, text: str) -> int:
    if not port.isascii() or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"the port must be 1..65535 in {text!r}")
    return int(port)


def complete_endpoint(endpoint: str, listen_port: int | None) -> str:
    """HOST:PORT checked, or HOST alone completed with the server's ListenPort."""
    try:
        host, port = parse_endpoint(endpoint)
    except ValueError as err:
        raise OpsError(f"endpoint: {err}; expected HOST:PORT (host name, IPv4, or [IPv6])") from None
    if port is None:
        if listen_port is None:
            raise OpsError(
                f"endpoint {endpoint!r} has no port and the server config has no ListenPort"
            )
        port = listen_port
    return join_host_port(host, port)


def check_dns(servers: list[str]) -> list[str]:
    """--dns: IP addresses only (they become the client's DNS line)."""
    checked = []
    for server in servers:
        try:
            checked.append(str(ipaddress.ip_address(server)))
        except ValueError:
            raise OpsError(f"--dns: not an IP address: {server!r}") from None
    return checked


@dataclass
class ClientSettings:
    private_key: bytes
    addresses: list[IPInterface]
    server_public_key: bytes
    endpoint: str
    preshared_key: bytes | None = None
    allowed_ips: str = DEFAULT_CLIENT_ALLOWED_IPS
    dns: list[str] = field(default_factory=list)
    keepalive: int = DEFAULT_KEEPALIVE
    name: str | None = None


def client_config_text(settings: ClientSettings) -> str:
    lines = ["[Interface]"]
    if settings.name:
        lines.append(serverconf.name_comment(settings.name))
    lines.append(f"PrivateKey = {keys.key_to_base64(settings.private_key)}")
    lines.append(f"Address = {', '.join(str(a) for a in settings.addresses)}")
    if settings.dns:
        lines.append(f"DNS = {', '.join(settings.dns)}")
    lines += ["", "[Peer]", f"PublicKey = {keys.key_to_base64(settings.server_public_key)}"]
    if settings.preshared_key is not None:
        lines.append(f"PresharedKey = {keys.key_to_base64(settings.preshared_key)}")
    lines.append(f"AllowedIPs = {settings.allowed_ips}")
    lines.append(f"Endpoint = {settings.endpoint}")
    if settings.keepalive:
        lines.append(f"PersistentKeepalive = {settings.keepalive}")
    return "".join(line + "\n" for line in lines)


def server_peer_block(
    name: str, public_key: bytes, preshared_key: bytes | None, allowed_ips: list[IPNetwork]
) -> list[str]:
    block = ["[Peer]", serverconf.name_comment(name), f"PublicKey = {keys.key_to_base64(public_key)}"]
    if preshared_key is not None:
        block.append(f"PresharedKey = {keys.key_to_base64(preshared_key)}")
    block.append(f"AllowedIPs = {', '.join(str(n) for n in allowed_ips)}")
    return block


# -- add-peer -------------------------------------------------------------------------------------


@dataclass
class AddPeerRequest:
    ifname: str
    name: str
    config_path: Path
    address: str = "auto"
    allowed_ips: str = DEFAULT_CLIENT_ALLOWED_IPS
    endpoint: str | None = None
    dns: list[str] = field(default_factory=list)
    keepalive: int = DEFAULT_KEEPALIVE
    preshared_key: bool = True
    allow_outside_subnet: bool = False
    # Called with the client's config after every check and before anything changes (writes
    # --out / --qr-png); an OpsError from it changes nothing.
    deliver: Callable[[str], None] | None = None


@dataclass
class AddPeerResult:
    client_config: str
    public_key: bytes
    addresses: list[IPInterface]
    live: bool  # False: the interface was not running, only the config changed


def load_server(path: Path) -> ServerConfig:
    try:
        return serverconf.load(path)
    except ConfigError as err:
        raise OpsError(f"cannot parse the server config: {err}") from None
    except FileNotFoundError:
        raise OpsError(f"{path}: no such config file (give the server's with --config)") from None
    except OSError as err:
        raise OpsError(f"{path}: {err.strerror}") from None


def live_state(control: DeviceControl, ifname: str) -> DeviceState | None:
    """The running interface, None when it is not running. Permission denied is not "not
    running": it is an error (a non-root run cannot see, so it must not answer)."""
    try:
        return control.get(ifname)
    except PermissionError as err:
        raise OpsError(f"cannot read interface {ifname}: {err.strerror}: "
                       "this needs root (run as root)") from None
    except OSError:
        return None


def _client_allowed_ips(text: str) -> str:
    try:
        networks = values.parse_allowed_ips(values.strip_wg_space(text)).networks
    except ValueError as err:
        raise OpsError(f"--allowed-ips: {err}") from None
    if not networks:
        raise OpsError("--allowed-ips: no network given")
    return ", ".join(str(n) for n in networks)


def add_peer(request: AddPeerRequest, control: DeviceControl) -> AddPeerResult:
    with serverconf.locked(request.config_path):
        return _add_peer(request, control)


def _add_peer(request: AddPeerRequest, control: DeviceControl) -> AddPeerResult:
    try:
        name = serverconf.check_name(request.name)
    except ValueError as err:
        raise OpsError(f"--name: {err}") from None
    server = load_server(request.config_path)
    config = server.config
    if server.find_peer(name) is not None:
        raise OpsError(f"a peer named {name!r} is already in {server.path}")
    live = live_state(control, request.ifname)

    server_private = config.interface.private_key or (live.private_key if live else None)
    if server_private is None:
        raise OpsError(
            f"{server.path} has no PrivateKey and {request.ifname} is not running: "
            "cannot tell the server's public key"
        )
    endpoint_given = request.endpoint
    endpoint = endpoint_given or server.remembered_endpoint()
    if not endpoint:
        raise OpsError(
            "no endpoint: give --endpoint HOST:PORT once (it is then remembered in the server "
            "config as '# wgpy: Endpoint = ...')"
        )
    listen_port = config.interface.listen_port or (live.listen_port if live else None)
    try:
        endpoint = complete_endpoint(endpoint, listen_port)
    except OpsError as err:
        where = "--endpoint" if endpoint_given else f"{server.path}: '# wgpy: Endpoint'"
        raise OpsError(f"{where}: {err}") from None
    allowed_ips = _client_allowed_ips(request.allowed_ips)
    if request.keepalive < 0 or request.keepalive > 65535:
        raise OpsError("--keepalive: 0 (off) to 65535 seconds")
    dns = check_dns(request.dns)

    if request.address == "auto":
        addresses = allocate_addresses(config, live)
    else:
        addresses = requested_addresses(
            request.address, config, live, request.allow_outside_subnet)

    private_key = keys.generate_private_key()
    public_key = keys.public_key(private_key)
    taken_keys = {p.public_key for p in config.peers} | {p.public_key for p in (live.peers if live else [])}
    if public_key in taken_keys or public_key == keys.public_key(server_private):
        raise OpsError("generated a key that is already in use; try again")
    preshared_key = keys.generate_preshared_key() if request.preshared_key else None
    server_allowed = [host_network(a.ip) for a in addresses]

    edited = server
    if endpoint_given and endpoint != server.remembered_endpoint():
        edited = serverconf.reparse(edited, edited.with_endpoint_remembered(endpoint))
    block = server_peer_block(name, public_key, preshared_key, server_allowed)
    edited = serverconf.reparse(edited, edited.with_peer_appended(block))

    client_text = client_config_text(ClientSettings(
        private_key=private_key, addresses=addresses, server_public_key=keys.public_key(server_private),
        endpoint=endpoint, preshared_key=preshared_key, allowed_ips=allowed_ips,
        dns=dns, keepalive=request.keepalive,
    ))
    parse_config(client_text, path="<client config>")  # must be a config wg-quick accepts
    try:
        check_no_control_characters(client_text, "<client config>")
        check_no_control_characters(edited.text, str(server.path))
    except ConfigError as err:
        raise OpsError(str(err)) from None

    if request.deliver is not None:
        request.deliver(client_text)
    peer_set = PeerSet(
        public_key=public_key, preshared_key=preshared_key,
        replace_allowed_ips=True, allowed_ips=server_allowed,
    )
    outside = [] if live is None else [
        n for n in server_allowed
        if not any(n.version == a.version and n.subnet_of(a.network)  # type: ignore[arg-type]
                   for a in config.interface.addresses)
    ]
    _commit(server, edited.text, control, request.ifname, live, peer_set,
            lambda: _add_routes(config, request.ifname, outside))
    return AddPeerResult(client_text, public_key, addresses, live is not None)


def _add_routes(config: Config, ifname: str, networks: list[IPNetwork]) -> None:
    """Routes for addresses outside the interface's subnets, as wg-quick up adds them for
    every AllowedIPs: none with Table = off, into the given table, else the main table
    unless a route of the link covers them already."""
    if not networks:
        return
    from wgpy.quick.config import routing_table_number
    from wgpy.quick.netlink import Netlink

    table = config.interface.table or "auto"
    if table == "off":
        return
    number = None if table == "auto" else routing_table_number(table)
    with Netlink() as netlink:
        for network in networks:
            if number is None and netlink.link_has_route_covering(ifname, network):
                continue
            netlink.add_route(network, ifname, table=number)


def _commit(
    original: ServerConfig, new_text: str, control: DeviceControl, ifname: str,
    live: DeviceState | None, peer_set: PeerSet,
    after_set: Callable[[], None] | None = None,
) -> None:
    """Write the config, then change the running interface (and after_set, e.g. routes); put
    the old config back, and take the live change back, if a later step fails."""
    if new_text != original.text:
        try:
            serverconf.write_private(original.path, new_text)
        except OSError as err:
            raise OpsError(f"{original.path}: {err.strerror}") from None
    if live is None:
        return
    try:
        control.set(ifname, SetRequest(peers=[peer_set]))
    except OSError as err:
        _restore(original, new_text)
        raise OpsError(f"{ifname}: could not change the running interface: {err.strerror}") from None
    if after_set is None:
        return
    try:
        after_set()
    except Exception as err:  # noqa: BLE001 -- whatever failed, the live change is undone
        if not peer_set.remove:
            control.set(ifname, SetRequest(peers=[PeerSet(public_key=peer_set.public_key,
                                                          remove=True)]))
        _restore(original, new_text)
        raise OpsError(f"{ifname}: could not add the route: {_reason(err)}") from None


def _restore(original: ServerConfig, new_text: str) -> None:
    if new_text != original.text:
        serverconf.write_private(original.path, original.text)


def _reason(err: Exception) -> str:
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    return os.strerror(code) if isinstance(code, int) and code > 0 else str(err)


# -- remove-peer ----------------------------------------------------------------------------------


@dataclass
class RemovePeerResult:
    public_key: bytes
    name: str | None
    in_config: bool
    live: bool


def remove_peer(
    ifname: str, name_or_key: str, config_path: Path, control: DeviceControl
) -> RemovePeerResult:
    with serverconf.locked(config_path):
        return _remove_peer(ifname, name_or_key, config_path, control)


def _remove_peer(
    ifname: str, name_or_key: str, config_path: Path, control: DeviceControl
) -> RemovePeerResult:
    server = load_server(config_path)
    key = serverconf.as_key(name_or_key)
    peer = server.find_peer(key if key is not None else name_or_key)
    if peer is None and key is not None:
        peer = server.find_peer(name_or_key)  # a name that happens to look like a key
    live = live_state(control, ifname)
    public_key = peer.public_key if peer is not None else key
    live_has_it = live is not None and public_key is not None and any(
        p.public_key == public_key for p in live.peers
    )
    if peer is None and not live_has_it:
        raise OpsError(f"no peer {name_or_key!r} in {server.path} or on {ifname}")
    assert public_key is not None
    new_text = server.text
    if peer is not None:
        new_text = serverconf.reparse(server, server.with_peer_removed(peer)).text
    _commit(server, new_text, control, ifname, live if live_has_it else None,
            PeerSet(public_key=public_key, remove=True))
    return RemovePeerResult(public_key, peer_name(peer) if peer else None, peer is not None, live_has_it)
