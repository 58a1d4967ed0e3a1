"""The cross-platform UAPI text protocol (https://www.wireguard.com/xplatform/), pure codec.

A client writes "get=1\\n\\n" or "set=1\\n" + key=value lines + "\\n"; the daemon answers with
key=value lines (for get) and always "errno=N\\n\\n". Keys are hex on the wire.

Error numbers: `UapiError.errno` is the positive POSIX errno (errno.EINVAL = 22). On the wire
wireguard-go writes it negated ("errno=-22"), and wg reports it as strerror(22) — so
`format_errno` writes -errno and `parse_errno` accepts either sign.

Server side: `parse_set` (a whole request → SetRequest, nothing applied, so a daemon can reject
a request without changing anything) and `format_get`. Client side: `format_set` (the lines wg
sends, in wg's order) and `parse_get` (accepting what wg accepts, ignoring unknown keys).
"""

from __future__ import annotations

import errno as errno_codes
import ipaddress
import os
import socket

from wgpy.keys import KeyError_, key_from_hex, key_to_hex
from wgpy.model import (
    DeviceState,
    HostPort,
    IPAddress,
    IPNetwork,
    PeerSet,
    PeerState,
    SetRequest,
    join_host_port,
)

# Where a userspace implementation listens: DIRECTORY/IFNAME.sock (wireguard-go's
# ipc/uapi_linux.go), which is where wg, wg-quick and every tool here look for one.
SOCKET_DIRECTORY = "/var/run/wireguard"
SOCKET_SUFFIX = ".sock"


def socket_path(ifname: str, directory: str | os.PathLike[str] = SOCKET_DIRECTORY) -> str:
    """The UAPI socket of interface `ifname` (a string: what AF_UNIX bind/connect take)."""
    return os.path.join(directory, f"{ifname}{SOCKET_SUFFIX}")


class UapiError(Exception):
    """A UAPI request failed. `errno` is the positive errno; `message` is for logs (no keys)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.message = message

    def __str__(self) -> str:
        return f"IPC error {-self.errno}: {self.message}"


def _invalid(message: str) -> UapiError:
    return UapiError(errno_codes.EINVAL, message)


def _protocol(message: str) -> UapiError:
    return UapiError(errno_codes.EPROTO, message)


# -- values --------------------------------------------------------------------------------------


def format_network(network: IPNetwork) -> str:
    """str(network), about 3x faster (`wg show` of 10,000 peers formats 20,000 of them).

    inet_ntop writes IPv6 as ipaddress does (RFC 5952), except addresses embedding IPv4
    (::/96, ::ffff:0:0/96), which it writes dotted: those go through str()."""
    address = network.network_address
    if network.version == 4:
        return f"{socket.inet_ntoa(address.packed)}/{network.prefixlen}"
    high = int(address) >> 32
    if high == 0 or high == 0xFFFF:
        return str(network)
    return f"{socket.inet_ntop(socket.AF_INET6, address.packed)}/{network.prefixlen}"


def parse_endpoint(text: str) -> HostPort:
    """A literal "ip:port" or "[ipv6%zone]:port", as Go's netip.ParseAddrPort accepts it."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError("not an address:port")
        host, port_text = text[1:close], text[close + 2 :]
        ipaddress.IPv6Address(host)  # accepts a %zone; rejects IPv4
        bare, percent, zone = host.partition("%")
        # inet_ntop's spelling (what wg prints via getnameinfo), e.g. ::ffff:1.2.3.4
        host = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, bare))
        host += percent + zone
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("missing port")
        address = ipaddress.IPv4Address(host)
        host = str(address)
    port = _parse_uint(port_text, 0xFFFF)
    return (host, port)


def _parse_uint(text: str, maximum: int) -> int:
    """Go strconv.ParseUint(text, 10, bits): ASCII digits only, no sign, in range."""
    if not text or not all("0" <= c <= "9" for c in text):
        raise ValueError(f"invalid syntax: {text!r}")
    stripped = text.lstrip("0") or "0"
    if len(stripped) > 20 or int(stripped) > maximum:
        raise ValueError(f"value out of range: {text!r}")
    return int(stripped)


def _parse_true(key: str, value: str) -> bool:
    if value != "true":
        raise _invalid(f"failed to set {key}, invalid value: {value}")
    return True


def _parse_hex_key(what: str, value: str) -> bytes:
    try:
        return key_from_hex(value)
    except KeyError_:
        raise _invalid(f"failed to set {what}: invalid hex key") from None


def _parse_allowed_ip(value: str) -> IPNetwork:
    """netip.ParsePrefix: address/bits with the bits required; host bits are masked."""
    address_text, slash, bits_text = value.partition("/")
    if not slash:
        raise _invalid(f"failed to set allowed ip: no '/' in {value!r}")
    try:
        # the family by its separator (what ip_address finds by trying both, raising once)
        address: IPAddress = (
            ipaddress.IPv6Address(address_text) if ":" in address_text
            else ipaddress.IPv4Address(address_text))
        if "%" in address_text:
            raise ValueError("zone in prefix")
        bits = _parse_uint(bits_text, address.max_prefixlen)
        if len(bits_text) > 1 and bits_text[0] == "0":
            raise ValueError("leading zero")
    except ValueError:
        raise _invalid(f"failed to set allowed ip: bad prefix {value!r}") from None
    # built from the int: from an address object, ip_network formats it and parses it again
    # (a third of a 10,000-peer set's parse time went there)
    if address.version == 4:
        return ipaddress.IPv4Network((int(address), bits), strict=False)
    return ipaddress.IPv6Network((int(address), bits), strict=False)


# -- set ------------------------------------------------------------------------------------------


def _body_lines(text: str, operation: str) -> list[str]:
    """The key=value lines of a request: up to the first blank line; an optional leading
    "set=1"/"get=1" line is dropped."""
    lines = text.split("\n")
    if lines and lines[0] == f"{operation}=1":
        lines = lines[1:]
    body: list[str] = []
    for line in lines:
        if line == "":
            return body
        body.append(line)
    return body  # no terminating blank line: wireguard-go applies what it read


def parse_set(text: str) -> SetRequest:
    """Parse a set request (with or without its "set=1" line) into a SetRequest.

    Raises UapiError with wireguard-go's errno: EPROTO for a line without '=', EINVAL for any
    bad key or value. Device keys after the first public_key are peer keys (and so invalid).
    """
    request = SetRequest()
    peer: PeerSet | None = None
    for line in _body_lines(text, "set"):
        key, sep, value = line.partition("=")
        if not sep:
            raise _protocol(f"failed to parse line {line!r}")
        if key == "public_key":
            try:
                peer = PeerSet(public_key=key_from_hex(value))
            except KeyError_:
                raise _invalid("failed to get peer by public key: invalid hex key") from None
            request.peers.append(peer)
        elif peer is None:
            _device_line(request, key, value)
        else:
            _peer_line(peer, key, value)
    return request


def _device_line(request: SetRequest, key: str, value: str) -> None:
    try:
        if key == "private_key":
            request.private_key = _parse_hex_key("private_key", value)
        elif key == "listen_port":
            request.listen_port = _parse_uint(value, 0xFFFF)
        elif key == "fwmark":
            request.fwmark = _parse_uint(value, 0xFFFFFFFF)
        elif key == "replace_peers":
            request.replace_peers = _parse_true("replace_peers", value)
        else:
            raise _invalid(f"invalid UAPI device key: {key}")
    except ValueError as err:
        raise _invalid(f"failed to parse {key}: {err}") from None


def _peer_line(peer: PeerSet, key: str, value: str) -> None:
    try:
        if key == "update_only":
            peer.update_only = _parse_true("update_only", value)
        elif key == "remove":
            peer.remove = _parse_true("remove", value)
        elif key == "preshared_key":
            peer.preshared_key = _parse_hex_key("preshared key", value)
        elif key == "endpoint":
            try:
                peer.endpoint = parse_endpoint(value)
            except ValueError:
                raise _invalid(f"failed to set endpoint {value}") from None
        elif key == "persistent_keepalive_interval":
            peer.persistent_keepalive = _parse_uint(value, 0xFFFF)
        elif key == "replace_allowed_ips":
            peer.replace_allowed_ips = _parse_true("replace_allowed_ips", value)
        elif key == "allowed_ip":
            peer.allowed_ips.append(_parse_allowed_ip(value))
        elif key == "protocol_version":
            if value != "1":
                raise _invalid(f"invalid protocol version: {value}")
            peer.protocol_version = 1
        else:
            raise _invalid(f"invalid UAPI peer key: {key}")
    except ValueError as err:
        raise _invalid(f"failed to parse {key}: {err}") from None


def format_set(request: SetRequest) -> str:
    """The request as wg writes it: "set=1\\n", device lines, peers, then a blank line."""
    out = ["set=1"]
    if request.private_key is not None:
        out.append(f"private_key={key_to_hex(request.private_key)}")
    if request.listen_port is not None:
        out.append(f"listen_port={request.listen_port}")
    if request.fwmark is not None:
        out.append(f"fwmark={request.fwmark}")
    if request.replace_peers:
        out.append("replace_peers=true")
    for peer in request.peers:
        out.append(f"public_key={key_to_hex(peer.public_key)}")
        if peer.remove:
            out.append("remove=true")
            continue
        if peer.update_only:
            out.append("update_only=true")
        if peer.protocol_version is not None:
            out.append(f"protocol_version={peer.protocol_version}")
        if peer.preshared_key is not None:
            out.append(f"preshared_key={key_to_hex(peer.preshared_key)}")
        if peer.endpoint is not None:
            out.append(f"endpoint={join_host_port(*peer.endpoint)}")
        if peer.persistent_keepalive is not None:
            out.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        if peer.replace_allowed_ips:
            out.append("replace_allowed_ips=true")
        for network in peer.allowed_ips:
            out.append(f"allowed_ip={network}")
    return "\n".join(out) + "\n\n"


# -- get ------------------------------------------------------------------------------------------


def format_errno(errno: int) -> str:
    """The status lines ending every response; errno is positive (0 = success)."""
    return f"errno={-errno if errno else 0}\n\n"


def format_get(state: DeviceState) -> str:
    """A daemon's answer to get=1, in wireguard-go's order, ending with "errno=0\\n\\n"."""
    out: list[str] = []
    if state.private_key is not None and any(state.private_key):
        out.append(f"private_key={key_to_hex(state.private_key)}")
    if state.listen_port:
        out.append(f"listen_port={state.listen_port}")
    if state.fwmark:
        out.append(f"fwmark={state.fwmark}")
    text = "".join(line + "\n" for line in out)
    # one string per peer, not per line: `wg show` of 10,000 peers is ~110,000 lines
    peer_texts = []
    for peer in state.peers:
        endpoint = ("" if peer.endpoint is None
                    else f"endpoint={join_host_port(*peer.endpoint)}\n")
        allowed_ips = "".join([f"allowed_ip={format_network(network)}\n"
                               for network in peer.allowed_ips])
        peer_texts.append(
            f"public_key={key_to_hex(peer.public_key)}\n"
            f"preshared_key={key_to_hex(peer.preshared_key)}\n"
            f"protocol_version={peer.protocol_version}\n"
            f"{endpoint}"
            f"last_handshake_time_sec={peer.last_handshake_sec}\n"
            f"last_handshake_time_nsec={peer.last_handshake_nsec}\n"
            f"tx_bytes={peer.tx_bytes}\n"
            f"rx_bytes={peer.rx_bytes}\n"
            f"persistent_keepalive_interval={peer.persistent_keepalive}\n"
            f"{allowed_ips}"
        )
    return text + "".join(peer_texts) + format_errno(0)


def parse_errno(value: str) -> int:
    """The errno of a status line, as a positive number (either sign accepted on the wire)."""
    negative = value.startswith("-")
    digits = value[1:] if negative else value
    number = _parse_uint(digits, 0x7FFFFFFF)
    return number


def parse_get(text: str) -> DeviceState:
    """Parse a get=1 response (up to and including the errno line) like wg does.

    Unknown keys are ignored; a malformed known value, or a response without its errno line,
    raises UapiError(EPROTO); a non-zero errno raises UapiError(errno).
    """
    state = DeviceState()
    peer: PeerState | None = None
    status: int | None = None
    lines = text.split("\n")
    if lines and lines[0] == "get=1":
        lines = lines[1:]
    for line in lines:
        if line == "":
            break
        key, sep, value = line.partition("=")
        if not sep:
            raise _protocol(f"malformed line {line!r}")
        try:
            if key == "errno":
                status = parse_errno(value)
            elif peer is None and key == "private_key":
                state.private_key = key_from_hex(value)
            elif peer is None and key == "listen_port":
                state.listen_port = _parse_uint(value, 0xFFFF)
            elif peer is None and key == "fwmark":
                state.fwmark = _parse_uint(value, 0xFFFFFFFF)
            elif key == "public_key":
                peer = PeerState(public_key=key_from_hex(value))
                state.peers.append(peer)
            elif peer is None:
                continue
            elif key == "preshared_key":
                peer.preshared_key = key_from_hex(value)
            elif key == "endpoint":
                peer.endpoint = parse_endpoint(value)
            elif key == "persistent_keepalive_interval":
                peer.persistent_keepalive = _parse_uint(value, 0xFFFF)
            elif key == "allowed_ip":
                peer.allowed_ips.append(_parse_allowed_ip(value))
            elif key == "last_handshake_time_sec":
                peer.last_handshake_sec = _parse_uint(value, 0x7FFFFFFFFFFFFFFF)
            elif key == "last_handshake_time_nsec":
                peer.last_handshake_nsec = _parse_uint(value, 0x7FFFFFFFFFFFFFFF)
            elif key == "rx_bytes":
                peer.rx_bytes = _parse_uint(value, 0xFFFFFFFFFFFFFFFF)
            elif key == "tx_bytes":
                peer.tx_bytes = _parse_uint(value, 0xFFFFFFFFFFFFFFFF)
            elif key == "protocol_version":
                peer.protocol_version = _parse_uint(value, 0xFFFFFFFF)
        except (ValueError, KeyError_, UapiError):
            raise _protocol(f"malformed value for {key}") from None
    if status is None:
        raise _protocol("response without errno")
    if status:
        raise UapiError(status, "get failed")
    return state


def parse_set_response(text: str) -> int:
    """The errno (positive) a daemon answered to a set request; EPROTO if unreadable."""
    status = errno_codes.EPROTO
    for line in text.split("\n"):
        if line == "":
            return status
        key, sep, value = line.partition("=")
        if not sep:
            return errno_codes.EPROTO
        if key == "errno":
            try:
                status = parse_errno(value)
            except ValueError:
                return errno_codes.EPROTO
    return errno_codes.EPROTO
