"""Apply a parsed `set=1` request to a Device, and describe a Device for `get=1`.

The semantics are wireguard-go's (device/uapi.go), with one deliberate difference: wireguard-go
applies a request line by line, so a bad line leaves the lines before it applied. Here the codec
parses and validates the whole request first, and the only steps that can still fail (binding
the listen port, setting the fwmark on sockets) run before anything else changes. A refused
request therefore changes nothing.

Rules carried over from wireguard-go:
- `listen_port` rebinds the sockets (0 = a new random port); a port in use is EADDRINUSE.
  Asking for the port already bound is a no-op. `get` reports the bound port.
- `fwmark` failing to apply is reported as EADDRINUSE too (wireguard-go's IpcErrorPortInUse).
- `private_key` all-zero clears it; a peer with our new public key is removed (by the Device).
- `replace_peers` removes every peer before the request's peers are applied.
- A peer section whose public key is the device's own public key is ignored entirely.
- `update_only`: an unknown peer is not created and its section is ignored.
- `remove`: the peer is removed; the rest of its section is ignored.
- `preshared_key` all-zero clears it.
- `replace_allowed_ips` drops the peer's prefixes before the section's `allowed_ip`s are added;
  an `allowed_ip` owned by another peer moves to this one.
- `persistent_keepalive_interval` raised from 0 sends a keepalive at once: applied last in the
  section, so the keepalive goes to the endpoint set in the same section.
"""

from __future__ import annotations

import errno
import hmac
from collections.abc import Callable
from typing import Any, Protocol

from wgpy.core.peer import remote_address
from wgpy.model import DeviceState, PeerSet, PeerState, SetRequest

_ZERO_KEY = bytes(32)


class ApplyError(Exception):
    """A request that could not be applied; `errno` is positive (EADDRINUSE ...)."""

    def __init__(self, errno_value: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_value


class NetControl(Protocol):
    """What apply needs from the IO layer (DeviceLoop provides it)."""

    def rebind(self, port: int) -> int: ...
    def set_mark(self, mark: int) -> None: ...


def _same_key(a: bytes | None, b: bytes | None) -> bool:
    if a is None or b is None:
        return a is b
    return hmac.compare_digest(a, b)


def apply_set(device: Any, request: SetRequest, net: NetControl | None, now: float) -> None:
    """Apply `request`; on ApplyError nothing was changed."""
    _apply_network(device, request, net)

    if request.private_key is not None:
        new_key = None if hmac.compare_digest(request.private_key, _ZERO_KEY) else (
            request.private_key
        )
        if not _same_key(new_key, device.private_key):
            device.set_private_key(new_key)

    if request.replace_peers:
        device.remove_all_peers()

    for peer_set in request.peers:
        _apply_peer(device, peer_set, now)


def _apply_network(device: Any, request: SetRequest, net: NetControl | None) -> None:
    """The fallible steps, first: fwmark, then the port (reverting the mark if it fails)."""
    old_mark = device.fwmark
    new_mark = request.fwmark
    mark_changed = new_mark is not None and new_mark != old_mark
    if new_mark is not None and mark_changed and net is not None:
        try:
            net.set_mark(new_mark)
        except OSError as e:
            raise ApplyError(errno.EADDRINUSE, f"failed to update fwmark: {e.strerror}") from None
    port = request.listen_port
    if port is not None and (port == 0 or port != device.listen_port):
        if net is not None:
            try:
                port = net.rebind(port)
            except OSError as e:
                if mark_changed:
                    try:
                        net.set_mark(old_mark)
                    except OSError:
                        pass
                raise ApplyError(
                    errno.EADDRINUSE, f"failed to set listen_port: {e.strerror}"
                ) from None
        device.listen_port = port
    if mark_changed:
        device.fwmark = new_mark


def _apply_peer(device: Any, peer_set: PeerSet, now: float) -> None:
    if _same_key(peer_set.public_key, device.public_key):
        return  # our own public key: wireguard-go treats it as a placeholder and ignores it
    peer = device.get_peer(peer_set.public_key)
    if peer_set.remove:
        if peer is not None:
            device.remove_peer(peer)
        return
    if peer is None:
        if peer_set.update_only:
            return
        peer = device.add_peer(peer_set.public_key)
    if peer_set.preshared_key is not None:
        peer.set_preshared_key(peer_set.preshared_key)
    if peer_set.endpoint is not None:
        device.set_endpoint(peer, peer_set.endpoint)
    if peer_set.replace_allowed_ips:
        device.allowed_ips.remove_by_value(peer)
    for network in peer_set.allowed_ips:
        device.allowed_ips.insert(network, peer)
    if peer_set.persistent_keepalive is not None:
        device.set_persistent_keepalive(peer, peer_set.persistent_keepalive, now)


WallClockOf = Callable[[float | None], tuple[int, int]]


def device_state(device: Any, wall_clock_of: WallClockOf) -> DeviceState:
    """The Device as `get=1` reports it. The core's times are monotonic; `wall_clock_of` (the
    daemon's clock, io/clock.py) turns a handshake's instant into (seconds, nanoseconds) since
    the epoch, (0, 0) for None (never)."""
    peers = []
    for peer in device.peers.values():
        sec, nsec = wall_clock_of(peer.last_handshake)
        peers.append(
            PeerState(
                public_key=peer.public_key,
                preshared_key=peer.preshared_key,
                endpoint=None if peer.endpoint is None else remote_address(peer.endpoint),
                persistent_keepalive=peer.persistent_keepalive,
                allowed_ips=list(device.allowed_ips.entries_for(peer)),
                rx_bytes=peer.rx_bytes,
                tx_bytes=peer.tx_bytes,
                last_handshake_sec=sec,
                last_handshake_nsec=nsec,
            )
        )
    return DeviceState(
        private_key=device.private_key,
        listen_port=device.listen_port,
        fwmark=device.fwmark,
        peers=peers,
    )
