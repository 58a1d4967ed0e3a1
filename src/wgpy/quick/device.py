"""The WireGuard device behind the interface: configure it and read it back over UAPI.

wg-quick does this with `wg addconf` / `wg show` / `wg set fwmark`; we build a `SetRequest` from
the parsed file and talk to the device through our own UAPI client.
"""

from __future__ import annotations

import os

from wgpy.conf import Config, PeerSection
from wgpy.conf import values as conf_values
from wgpy.conf.request import request_from_config
from wgpy.control.client import DeviceControl
from wgpy.control.uapi import UapiError
from wgpy.model import DeviceState, HostPort, SetRequest
from wgpy.quick import log
from wgpy.quick.config import QuickError


def set_request_from_config(config: Config) -> SetRequest:
    """What `wg addconf` sends for the file: interface keys present, then each peer with its
    allowed IPs replacing any old ones. Endpoints are resolved now (with wg's retries)."""

    def resolve(peer: PeerSection) -> HostPort | None:
        if peer.endpoint is None:
            return None
        try:
            return conf_values.resolve_endpoint(peer.endpoint, warn=log.note)
        except ValueError as err:
            raise QuickError(f"{config.path}:{peer.line}: Endpoint: {err}") from None

    return request_from_config(config, append=True, resolve=resolve)


def configure(ifname: str, config: Config) -> None:
    log.action(f"wgpy addconf {ifname} <stripped config>")
    _uapi_set(ifname, set_request_from_config(config))


def set_fwmark(ifname: str, mark: int) -> None:
    log.action(f"wgpy set {ifname} fwmark {mark}")
    _uapi_set(ifname, SetRequest(fwmark=mark))


def state(ifname: str) -> DeviceState:
    return _uapi_get(ifname)


# --- transport ---------------------------------------------------------------------------------


def _control() -> DeviceControl:
    # A UAPI socket (wgpy-daemon, wireguard-go) when there is one, else the kernel's netlink.
    return DeviceControl()


def _uapi_set(ifname: str, request: SetRequest) -> None:
    try:
        _control().set(ifname, request)
    except (OSError, UapiError) as err:
        raise QuickError(f"Unable to modify interface {ifname}: {_reason(err)}") from None


def _uapi_get(ifname: str) -> DeviceState:
    try:
        return _control().get(ifname)
    except (OSError, UapiError) as err:
        raise QuickError(f"Unable to access interface {ifname}: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    return str(err)
