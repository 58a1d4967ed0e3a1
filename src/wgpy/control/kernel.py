"""Kernel WireGuard interfaces through generic netlink, via pyroute2's `WireGuard` socket.

Mapping between our model and pyroute2's API (pyroute2.netlink.generic.wireguard):

- get: `info(ifname)` answers a dump — possibly several messages, the kernel splitting a peer
  with many allowed IPs over messages; consecutive entries with the same public key are merged
  like wg's coalesce_peers. Keys arrive base64-encoded, endpoints as {'addr', 'port'}, allowed
  IPs as {'addr': 'ip/cidr'}, the handshake as {'tv_sec', 'tv_nsec'}.
- set: `set(ifname, listen_port=, fwmark=, private_key=, peer=)` takes at most one peer per call
  and has no device flags, so a SetRequest becomes one call for the device attributes and one
  per peer. `replace_peers` (WGDEVICE_F_REPLACE_PEERS) is emulated by removing the current
  peers first: the same end state as the kernel flag, but not atomic.
- errors: pyroute2's NetlinkError carries the kernel's errno; it is raised as OSError. A missing
  "wireguard" generic netlink family (no module) is EPROTONOSUPPORT, as wg reports it.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wgpy.keys import key_to_base64
from wgpy.model import DeviceState, PeerSet, PeerState, SetRequest

WIREGUARD_MODULE_DIR = Path("/sys/module/wireguard")


def _default_factory() -> Any:
    from pyroute2 import WireGuard

    return WireGuard()


def _key(value: Any) -> bytes | None:
    """A 32-byte key from what pyroute2 decodes (base64 bytes/str), or None."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("value", value.get("key"))
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes) and len(value) == 32:
        return value
    raw = base64.b64decode(value)
    return raw if len(raw) == 32 else None


def _attr(obj: Any, name: str) -> Any:
    if hasattr(obj, "get_attr"):
        return obj.get_attr(name)
    for key, value in obj.get("attrs", ()):
        if key == name:
            return value
    return None


def _netlink_oserror(err: Exception, default: int = errno.EINVAL) -> OSError:
    code = getattr(err, "code", None)
    if not isinstance(code, int) or code <= 0:
        code = default
    return OSError(code, os.strerror(code))


def device_state_from_messages(messages: Iterable[Any]) -> DeviceState:
    """Build a DeviceState from the messages of a WG_CMD_GET_DEVICE dump."""
    state = DeviceState()
    for message in messages:
        private_key = _key(_attr(message, "WGDEVICE_A_PRIVATE_KEY"))
        if private_key is not None:
            state.private_key = private_key
        port = _attr(message, "WGDEVICE_A_LISTEN_PORT")
        if port is not None:
            state.listen_port = int(port)
        fwmark = _attr(message, "WGDEVICE_A_FWMARK")
        if fwmark is not None:
            state.fwmark = int(fwmark)
        for peer_attrs in _attr(message, "WGDEVICE_A_PEERS") or ():
            peer = _peer_state(peer_attrs)
            last = state.peers[-1] if state.peers else None
            if last is not None and last.public_key == peer.public_key:
                last.allowed_ips.extend(peer.allowed_ips)  # coalesce a split peer
            else:
                state.peers.append(peer)
    return state


def _peer_state(attrs: Any) -> PeerState:
    public_key = _key(_attr(attrs, "WGPEER_A_PUBLIC_KEY"))
    if public_key is None:
        raise OSError(errno.EPROTO, os.strerror(errno.EPROTO))
    peer = PeerState(public_key=public_key)
    psk = _key(_attr(attrs, "WGPEER_A_PRESHARED_KEY"))
    if psk is not None:
        peer.preshared_key = psk
    endpoint = _attr(attrs, "WGPEER_A_ENDPOINT")
    if endpoint and endpoint.get("addr"):
        peer.endpoint = (str(endpoint["addr"]), int(endpoint["port"]))
    keepalive = _attr(attrs, "WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL")
    if keepalive is not None:
        peer.persistent_keepalive = int(keepalive)
    handshake = _attr(attrs, "WGPEER_A_LAST_HANDSHAKE_TIME")
    if handshake:
        peer.last_handshake_sec = int(handshake.get("tv_sec", 0))
        peer.last_handshake_nsec = int(handshake.get("tv_nsec", 0))
    for name, field in (("WGPEER_A_RX_BYTES", "rx_bytes"), ("WGPEER_A_TX_BYTES", "tx_bytes")):
        value = _attr(attrs, name)
        if value is not None:
            setattr(peer, field, int(value))
    version = _attr(attrs, "WGPEER_A_PROTOCOL_VERSION")
    if version is not None:
        peer.protocol_version = int(version)
    for allowed in _attr(attrs, "WGPEER_A_ALLOWEDIPS") or ():
        text = allowed.get("addr") if isinstance(allowed, dict) else None
        if text:
            peer.allowed_ips.append(ipaddress.ip_network(text, strict=False))
    return peer


def peer_to_pyroute2(peer: PeerSet) -> dict[str, Any]:
    """The `peer=` argument of pyroute2's WireGuard.set for one PeerSet."""
    out: dict[str, Any] = {"public_key": key_to_base64(peer.public_key)}
    if peer.remove:
        out["remove"] = True
        return out
    if peer.update_only:
        out["update_only"] = True
    if peer.preshared_key is not None:
        out["preshared_key"] = key_to_base64(peer.preshared_key)
    if peer.endpoint is not None:
        out["endpoint_addr"], out["endpoint_port"] = peer.endpoint
    if peer.persistent_keepalive is not None:
        out["persistent_keepalive"] = peer.persistent_keepalive
    if peer.replace_allowed_ips:
        out["replace_allowed_ips"] = True
    if peer.allowed_ips:
        out["allowed_ips"] = [str(network) for network in peer.allowed_ips]
    return out


def set_request_to_calls(
    request: SetRequest, current: DeviceState | None = None
) -> list[dict[str, Any]]:
    """The keyword arguments of each pyroute2 `set` call carrying out `request`, in order.

    `current` is the device before the change; it is needed only for replace_peers.
    """
    calls: list[dict[str, Any]] = []
    device: dict[str, Any] = {}
    if request.private_key is not None:
        device["private_key"] = key_to_base64(request.private_key)
    if request.listen_port is not None:
        device["listen_port"] = request.listen_port
    if request.fwmark is not None:
        device["fwmark"] = request.fwmark
    if device or not request.peers:
        calls.append(device)
    if request.replace_peers and current is not None:
        for running in current.peers:
            calls.append(
                {"peer": {"public_key": key_to_base64(running.public_key), "remove": True}}
            )
    for peer in request.peers:
        calls.append({"peer": peer_to_pyroute2(peer)})
    return calls


class KernelClient:
    """DeviceBackend for kernel interfaces. `factory` makes a pyroute2 WireGuard-like object
    (tests pass a fake); `links` lists (ifname, kind) in ifindex order (default: pyroute2)."""

    def __init__(
        self,
        factory: Callable[[], Any] = _default_factory,
        links: Callable[[], list[tuple[str, str | None]]] | None = None,
        module_dir: Path = WIREGUARD_MODULE_DIR,
    ) -> None:
        self.factory = factory
        self.links = links or _pyroute2_links
        self.module_dir = module_dir

    def _open(self, ifname: str) -> Any:
        try:
            return self.factory()
        except Exception as err:  # noqa: BLE001 -- pyroute2's NetlinkError, family lookup
            code = getattr(err, "code", None)
            if code == errno.ENOENT or code is None:
                # No WireGuard family (no module). wg says "Protocol not supported" for any
                # name then; the kernel's answer for a name no link has is "No such device",
                # and that is what tells the operator what is wrong.
                code = errno.EPROTONOSUPPORT if _link_exists(ifname) else errno.ENODEV
                raise OSError(code, os.strerror(code)) from None
            raise _netlink_oserror(err) from None

    def get(self, ifname: str) -> DeviceState:
        wireguard = self._open(ifname)
        try:
            return device_state_from_messages(wireguard.info(ifname))
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 -- pyroute2's NetlinkError (lazily imported)
            raise _netlink_oserror(err) from None
        finally:
            _close(wireguard)

    def set(self, ifname: str, request: SetRequest) -> None:
        wireguard = self._open(ifname)
        try:
            current = None
            if request.replace_peers:
                current = device_state_from_messages(wireguard.info(ifname))
            for call in set_request_to_calls(request, current):
                wireguard.set(ifname, **call)
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 -- pyroute2's NetlinkError (lazily imported)
            raise _netlink_oserror(err) from None
        finally:
            _close(wireguard)

    def list_interfaces(self) -> list[str]:
        # Without the module no link can be of kind wireguard; skip the netlink dump (and the
        # pyroute2 import) then. The module's sysfs directory exists also when built in.
        if not self.module_dir.exists():
            return []
        return [name for name, kind in self.links() if kind == "wireguard"]


def _link_exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except (OSError, ValueError):  # ENODEV; a name with a NUL byte
        return False
    return True


def _pyroute2_links() -> list[tuple[str, str | None]]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [
            (link.get_attr("IFLA_IFNAME"), link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"))
            for link in ipr.get_links()
        ]


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        close()
