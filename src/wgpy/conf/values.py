"""Value parsers shared by the config-file parser and `wgpy set`.

Each parser accepts exactly what wireguard-tools' config.c accepts and, on failure, raises
`ValueError` whose message is the line wg prints to stderr (without the newline), so the CLI can
reproduce wg's output byte for byte. Messages quote the value as wg does (`value'); they are
never given key material other than what the user typed on that line.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from wgpy.keys import B64_KEY_LEN, KeyError_, key_from_base64, key_to_base64
from wgpy.model import HostPort, IPAddress, IPNetwork

# wg's char_is_space: \t \n \v \f \r and space.
WG_SPACE = "\t\n\v\f\r "
_WG_SPACE_TABLE = str.maketrans("", "", WG_SPACE)


def strip_wg_space(text: str) -> str:
    """Remove every whitespace character wg considers a space (anywhere, not only at the ends)."""
    return text.translate(_WG_SPACE_TABLE)


def is_wg_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _all_digits(text: str) -> bool:
    return bool(text) and all("0" <= c <= "9" for c in text)


def _digits_value(text: str) -> int:
    """The value of an all-digit string, saturating like strtoul instead of Python's
    refusal to convert very long strings."""
    stripped = text.lstrip("0") or "0"
    if len(stripped) > 20:
        return 1 << 64
    return int(stripped)


def parse_key(value: str) -> bytes:
    """A base64 key exactly as wg's key_from_base64 accepts it (canonical padding bits only)."""
    message = f"Key is not the correct length or format: `{value}'"
    if len(value) != B64_KEY_LEN or value[-1] != "=":
        raise ValueError(message)
    try:
        raw = key_from_base64(value)
    except KeyError_:
        raise ValueError(message) from None
    # wg rejects keys whose last symbol carries non-zero padding bits; Python's decoder ignores
    # them, so require the canonical re-encoding to equal the input.
    if not hmac.compare_digest(key_to_base64(raw), value):
        raise ValueError(message)
    return raw


def parse_port(value: str) -> int:
    """ListenPort / listen-port: resolved with getaddrinfo(NULL, value) exactly as wg does.

    That accepts service names from /etc/services and, like glibc, reduces numbers modulo 65536.
    """
    if not value:
        raise ValueError("Unable to parse empty port")
    try:
        resolved = socket.getaddrinfo(
            None, value, socket.AF_UNSPEC, socket.SOCK_DGRAM, socket.IPPROTO_UDP, socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise ValueError(f"{_gai_message(err)}: `{value}'") from None
    except UnicodeError:
        raise ValueError(f"Servname not supported for ai_socktype: `{value}'") from None
    family, _, _, _, sockaddr = resolved[0]
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"Neither IPv4 nor IPv6 address found: `{value}'")
    return int(sockaddr[1])


def parse_fwmark(value: str) -> int:
    """FwMark: "off", decimal, or 0x-prefixed hex, at most 0xffffffff."""
    if value.lower() == "off":
        return 0
    message = f"Fwmark is neither 0/off nor 0-0xffffffff: `{value}'"
    if not value or not is_wg_digit(value[0]):
        raise ValueError(message)
    if len(value) > 2 and value[:2] == "0x":
        digits = value[2:]
        if not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise ValueError(message)
        trimmed = digits.lstrip("0") or "0"
        mark = int(trimmed, 16) if len(trimmed) <= 16 else 1 << 64
    else:
        if not _all_digits(value):
            raise ValueError(message)
        mark = _digits_value(value)
    if mark > 0xFFFFFFFF:
        raise ValueError(message)
    return mark


def parse_persistent_keepalive(value: str) -> int:
    """PersistentKeepalive: "off" or 0..65535 (0 = off)."""
    if value.lower() == "off":
        return 0
    if not _all_digits(value) or _digits_value(value) > 65535:
        raise ValueError(
            f"Persistent keepalive interval is neither 0/off nor 1-65535: `{value}'"
        )
    return _digits_value(value)


def _parse_ip(text: str) -> IPAddress:
    # wg picks the family by the presence of ':' and uses inet_pton, which is stricter than
    # Python's ipaddress in a few corners (no scope ids), so use inet_pton itself.
    try:
        if ":" in text:
            return ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        raise ValueError(f"Unable to parse IP address: `{text}'") from None


@dataclass
class AllowedIPsResult:
    networks: list[IPNetwork]
    warnings: list[str]  # wg's "Warning: AllowedIP has nonzero host part: ..." lines


def parse_allowed_ips(value: str) -> AllowedIPsResult:
    """A comma-separated list of ip[/cidr]; an empty value means "no allowed IPs"."""
    networks: list[IPNetwork] = []
    warnings: list[str] = []
    if not value:
        return AllowedIPsResult(networks, warnings)
    for entry in value.split(","):
        ip_text, slash, mask = entry.partition("/")
        address = _parse_ip(ip_text)
        max_cidr = address.max_prefixlen
        if slash:
            if not _all_digits(mask) or _digits_value(mask) > max_cidr:
                raise ValueError(f"AllowedIP is not in the correct format: `{entry}'")
            cidr = _digits_value(mask)
        else:
            cidr = max_cidr
        network = ipaddress.ip_network((address, cidr), strict=False)
        if network.network_address != address:
            warnings.append(f"Warning: AllowedIP has nonzero host part: {ip_text}/{mask}")
        networks.append(network)
    return AllowedIPsResult(networks, warnings)


def split_endpoint(value: str) -> tuple[str, str]:
    """Split "host:port" / "[v6]:port" into (host, port) with wg's rules and messages."""
    if not value:
        raise ValueError("Unable to parse empty endpoint")
    if value[0] == "[":
        close = value.find("]")
        if close < 0:
            raise ValueError(f"Unable to find matching brace of endpoint: `{value}'")
        rest = value[close + 1 :]
        if not rest.startswith(":") or len(rest) == 1:
            raise ValueError(f"Unable to find port of endpoint: `{value}'")
        return value[1:close], rest[1:]
    colon = value.rfind(":")
    if colon < 0 or colon == len(value) - 1:
        raise ValueError(f"Unable to find port of endpoint: `{value}'")
    return value[:colon], value[colon + 1 :]


def _gai_message(err: socket.gaierror) -> str:
    if err.errno == socket.EAI_SYSTEM:
        return os.strerror(err.errno)
    return err.strerror or "Unknown error"


_PERMANENT_GAI_ERRORS = {socket.EAI_NONAME, socket.EAI_FAIL}
if hasattr(socket, "EAI_NODATA"):
    _PERMANENT_GAI_ERRORS.add(socket.EAI_NODATA)


def endpoint_resolution_retries() -> int:
    """WG_ENDPOINT_RESOLUTION_RETRIES as wg reads it: default 15, "infinity" = -1."""
    text = os.environ.get("WG_ENDPOINT_RESOLUTION_RETRIES")
    if text is None:
        return 15
    if text == "infinity":
        return -1
    if not _all_digits(text) or _digits_value(text) > 0x7FFFFFFF:
        raise SystemExit(f"Unable to parse WG_ENDPOINT_RESOLUTION_RETRIES: `{text}'")
    return _digits_value(text)


def resolve_endpoint(
    value: str,
    *,
    warn: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> HostPort:
    """Resolve an endpoint like wg: getaddrinfo, retrying transient failures with backoff.

    Retries start at 1 s, grow by 6/5 up to 20 s, WG_ENDPOINT_RESOLUTION_RETRIES times;
    each retry is announced through `warn` with wg's wording.
    """
    host, port = split_endpoint(value)
    retries = endpoint_resolution_retries()
    timeout_us = 1_000_000
    while True:
        try:
            resolved = socket.getaddrinfo(
                host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM, socket.IPPROTO_UDP
            )
            break
        except UnicodeError:
            raise ValueError(f"Name or service not known: `{value}'") from None
        except socket.gaierror as err:
            permanent = err.errno in _PERMANENT_GAI_ERRORS
            if permanent or retries == 0:
                raise ValueError(f"{_gai_message(err)}: `{value}'") from None
            if retries > 0:
                retries -= 1
            if warn is not None:
                warn(
                    f"{_gai_message(err)}: `{value}'. "
                    f"Trying again in {timeout_us / 1_000_000.0:.2f} seconds..."
                )
            sleep(timeout_us / 1_000_000.0)
            timeout_us = min(20_000_000, timeout_us * 6 // 5)
    family, _, _, _, sockaddr = resolved[0]
    if family == socket.AF_INET:
        return (str(sockaddr[0]), int(sockaddr[1]))
    if family == socket.AF_INET6:
        # getaddrinfo gives (host, port, flowinfo, scope_id); a scope stays in host as "%ifname".
        return (str(sockaddr[0]), int(sockaddr[1]))
    raise ValueError(f"Neither IPv4 nor IPv6 address found: `{value}'")
