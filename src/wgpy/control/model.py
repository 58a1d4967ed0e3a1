"""The one device/peer model shared by the UAPI codec, the wg tool and the daemon.

`DeviceState`/`PeerState` describe a device as `get=1` reports it. `SetRequest`/`PeerSet`
describe a `set=1` request: every field left as None means "not mentioned".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# An endpoint is (host, port): host is a literal IP address string, "1.2.3.4" or "fe80::1"
# (no brackets), as the socket layer reports it.
Endpoint = tuple[str, int]


@dataclass
class PeerState:
    public_key: bytes
    preshared_key: bytes = bytes(32)
    endpoint: Endpoint | None = None
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
    endpoint: Endpoint | None = None
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
