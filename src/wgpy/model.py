"""The one device/peer model every layer shares: the core and the IO layer, the UAPI codec and
server, the wg tool, the configuration format, wgpy-quick and the operator tools.

`DeviceState`/`PeerState` describe a device as `get=1` reports it. `SetRequest`/`PeerSet`
describe a `set=1` request: every field left as None means "not mentioned". Beside them the
address types, each defined here once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# a network, as AllowedIPs and routes name it: 10.0.0.0/24
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# an address with its prefix, as Address = names it: 10.0.0.1/24
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# A peer's address as wg, the userspace API and a configuration name it: (host, port), host a
# literal IP address string, "1.2.3.4" or "fe80::1%eth0" (no brackets).
HostPort = tuple[str, int]

# Where a peer is, as the core and the IO layer hold it: its HostPort and -- once an
# authenticated datagram from it arrived through an IO layer that reports the local address it
# arrived at -- that local source as a third item (host, port, source). The source is opaque to
# the core (the IO layer makes it and sends from it again: the kernel's "sticky" endpoint
# src4/src6, part of its struct endpoint as here). The three items are compared together, so a
# datagram that arrives at another local address moves the endpoint as roaming does, and only
# after authentication. `wg set ... endpoint` stores a bare HostPort: no source.
Endpoint = HostPort | tuple[str, int, bytes]


def join_host_port(host: str, port: int) -> str:
    """"host:port", or "[host]:port" when the host has a ':' (IPv6, with its %zone): how wg, the
    userspace API and a configuration spell an endpoint (Go's net.JoinHostPort)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class PeerState:
    public_key: bytes
    preshared_key: bytes = bytes(32)
    endpoint: HostPort | None = None
    persistent_keepalive: int = 0  # 0 = off
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    rx_bytes: int = 0
    tx_bytes: int = 0
    last_handshake_sec: int = 0
    last_handshake_nsec: int = 0
    protocol_version: int = 1


@dataclass
class DeviceState:
    private_key: bytes | None = None
    listen_port: int = 0
    fwmark: int = 0
    peers: list[PeerState] = field(default_factory=list)


@dataclass
class PeerSet:
    public_key: bytes
    remove: bool = False
    update_only: bool = False
    preshared_key: bytes | None = None  # all-zero bytes = clear it
    endpoint: HostPort | None = None
    persistent_keepalive: int | None = None
    replace_allowed_ips: bool = False
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    protocol_version: int | None = None


@dataclass
class SetRequest:
    private_key: bytes | None = None  # all-zero bytes = clear it
    listen_port: int | None = None
    fwmark: int | None = None  # 0 = clear it
    replace_peers: bool = False
    peers: list[PeerSet] = field(default_factory=list)
