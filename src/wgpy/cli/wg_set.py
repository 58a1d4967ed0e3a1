"""`wg set` arguments and `wg setconf/addconf/syncconf` files → SetRequest, as wg builds them
(a parsed file becomes a request in conf/request.py).

Every problem raises `UsageProblem` carrying the exact lines wg prints to stderr; nothing is
sent to the device unless the whole request parsed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from wgpy.conf import ConfigError, parse_config, values
from wgpy.conf.parser import Config
from wgpy.model import DeviceState, PeerSet, SetRequest

WG_KEY_B64_LEN = 44


class UsageProblem(Exception):
    """A rejected command; `lines` are printed to stderr as they are (each ends with \\n)."""

    def __init__(self, *lines: str) -> None:
        super().__init__("".join(lines))
        self.lines = lines


def warn(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def read_key_file(path: str) -> bytes:
    """wg's parse_keyfile: 44 base64 characters then only whitespace; an empty file (or
    /dev/null) means the all-zero key, i.e. "remove the key"."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- closed below; open errors differ from read
    except IsADirectoryError:
        raise UsageProblem("Invalid length key in key file\n") from None  # fopen works, fread not
    except OSError as err:
        raise UsageProblem(f"fopen: {os.strerror(err.errno or 0)}\n") from None
    with handle:
        try:
            data = handle.read(WG_KEY_B64_LEN)
            if len(data) < WG_KEY_B64_LEN:
                if not data:
                    return bytes(32)
                raise UsageProblem("Invalid length key in key file\n")
            while chunk := handle.read(4096):
                for byte in chunk:
                    if chr(byte) not in values.WG_SPACE:
                        char = bytes([byte]).decode("utf-8", errors="surrogateescape")
                        raise UsageProblem(f"Found trailing character in key file: `{char}'\n")
        except OSError:
            raise UsageProblem("Invalid length key in key file\n") from None
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        return values.parse_key(text)
    except ValueError as err:
        raise UsageProblem(f"{err}\n") from None


def request_from_args(
    args: list[str], resolve: Callable[[str], tuple[str, int]] | None = None
) -> tuple[SetRequest, list[str]]:
    """wg's config_read_cmd: the `wg set IFACE ...` arguments after the interface name.

    Returns the request and the warnings wg prints (AllowedIP host bits), in order.
    """
    resolve = resolve or (lambda value: values.resolve_endpoint(value, warn=warn))
    request = SetRequest()
    peer: PeerSet | None = None
    warnings: list[str] = []
    index = 0

    def value_error(err: ValueError) -> UsageProblem:
        return UsageProblem(f"{err}\n")

    while index < len(args):
        arg = args[index]
        has_value = index + 1 < len(args)
        value = args[index + 1] if has_value else ""
        try:
            if arg == "listen-port" and has_value and peer is None:
                request.listen_port = values.parse_port(value)
            elif arg == "fwmark" and has_value and peer is None:
                request.fwmark = values.parse_fwmark(value)
            elif arg == "private-key" and has_value and peer is None:
                request.private_key = read_key_file(value)
            elif arg == "peer" and has_value:
                peer = PeerSet(public_key=values.parse_key(value))
                request.peers.append(peer)
            elif arg == "remove" and peer is not None:
                peer.remove = True
                index += 1
                continue
            elif arg == "endpoint" and has_value and peer is not None:
                peer.endpoint = resolve(value)
            elif arg == "allowed-ips" and has_value and peer is not None:
                result = values.parse_allowed_ips(values.strip_wg_space(value))
                for line in result.warnings:
                    warn(line)
                warnings.extend(result.warnings)
                peer.replace_allowed_ips = True
                peer.allowed_ips.extend(result.networks)
            elif arg == "persistent-keepalive" and has_value and peer is not None:
                peer.persistent_keepalive = values.parse_persistent_keepalive(value)
            elif arg == "preshared-key" and has_value and peer is not None:
                peer.preshared_key = read_key_file(value)
            else:
                raise UsageProblem(f"Invalid argument: {arg}\n")
        except ValueError as err:
            raise value_error(err) from None
        index += 2
    return request, warnings


def parse_config_file(
    path: str, resolve: Callable[[str], tuple[str, int]] | None = None
) -> Config:
    """Read a `wg setconf` file (wg-quick keys are errors). Errors carry wg's lines with the
    first prefixed by "file:line: " (wgpy names the place; wg does not)."""
    resolve = resolve or (lambda value: values.resolve_endpoint(value, warn=warn))
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", errors="surrogateescape")
    except OSError as err:
        raise UsageProblem(f"fopen: {os.strerror(err.errno or 0)}\n") from None
    try:
        config = parse_config(text, path=path, quick=False, resolve_endpoint=resolve,
                              on_warning=lambda _line, text: warn(text))
    except ConfigError as err:
        if err.message == "A peer is missing a public key":
            raise UsageProblem(f"{path}:{err.line}: {err.message}\n",
                               "Invalid configuration\n") from None
        raise UsageProblem(f"{path}:{err.line}: {err.message}\n",
                           "Configuration parsing error\n") from None
    return config


def sync_request(request: SetRequest, runtime: DeviceState) -> None:
    """wg syncconf (v1.0.20210914): instead of replacing all peers, remove only the running
    peers the file does not mention (so the others keep their sessions)."""
    if not runtime.peers:
        return
    request.replace_peers = False
    in_file = {peer.public_key for peer in request.peers}
    stale = sorted({p.public_key for p in runtime.peers if p.public_key not in in_file})
    for key in stale:  # wg prepends each, so the removals end up in reverse key order
        request.peers.insert(0, PeerSet(public_key=key, remove=True))
