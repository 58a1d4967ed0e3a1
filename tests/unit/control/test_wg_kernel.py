"""control/kernel.py: DeviceState/SetRequest <-> pyroute2's WireGuard API, with a fake socket.

The "kernel" answers are real pyroute2 `wgmsg` messages, encoded and decoded, so the mapping is
checked against pyroute2's own attribute decoding (this machine has no wireguard module).
"""

from __future__ import annotations

import base64
import errno
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import wgmsg

from wgpy.control.kernel import (
    KernelClient,
    device_state_from_messages,
    peer_to_pyroute2,
    set_request_to_calls,
)
from wgpy.model import DeviceState, PeerSet, PeerState, SetRequest

K = [bytes([i + 1] * 32) for i in range(6)]


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def decoded(attrs: list[Any]) -> wgmsg:
    """Build, encode and decode a WG_CMD_GET_DEVICE message, as pyroute2 would hand it."""
    message = wgmsg()
    message["cmd"] = 0
    message["version"] = 1
    message["attrs"] = attrs
    message.encode()
    result = wgmsg(message.data)
    result.decode()
    return result


def peer_attrs(key: bytes, *, psk: bytes = bytes(32), endpoint: dict | None = None,
               ips: list[tuple[int, bytes, int]] = (), handshake=(0, 0), rx=0, tx=0,
               keepalive=0) -> dict:
    attrs = [["WGPEER_A_PUBLIC_KEY", b64(key)], ["WGPEER_A_PRESHARED_KEY", b64(psk)],
             ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", keepalive],
             ["WGPEER_A_RX_BYTES", rx], ["WGPEER_A_TX_BYTES", tx],
             ["WGPEER_A_PROTOCOL_VERSION", 1]]
    if endpoint:
        attrs.append(["WGPEER_A_ENDPOINT", endpoint])
    if handshake != (0, 0):
        attrs.append(["WGPEER_A_LAST_HANDSHAKE_TIME",
                      {"tv_sec": handshake[0], "tv_nsec": handshake[1]}])
    if ips:
        attrs.append(["WGPEER_A_ALLOWEDIPS", [
            {"attrs": [["WGALLOWEDIP_A_FAMILY", family], ["WGALLOWEDIP_A_IPADDR", address],
                       ["WGALLOWEDIP_A_CIDR_MASK", cidr]]}
            for family, address, cidr in ips]])
    return {"attrs": attrs}


def kernel_dump() -> list[wgmsg]:
    """Two messages; the second continues the first's last peer (more allowed IPs)."""
    first = decoded([
        ["WGDEVICE_A_IFNAME", "wg0"], ["WGDEVICE_A_PRIVATE_KEY", b64(K[0])],
        ["WGDEVICE_A_LISTEN_PORT", 51820], ["WGDEVICE_A_FWMARK", 0x42],
        ["WGDEVICE_A_PEERS", [
            peer_attrs(K[1], psk=K[2], endpoint={"addr": "192.0.2.1", "port": 7},
                       ips=[(2, bytes([10, 0, 0, 0]), 8)], rx=10, tx=20, keepalive=25,
                       handshake=(1_700_000_000, 5)),
            peer_attrs(K[3], endpoint={"addr": "fd00::1", "port": 51820},
                       ips=[(10, bytes.fromhex("fd00" + "00" * 14), 64)]),
        ]],
    ])
    second = decoded([
        ["WGDEVICE_A_IFNAME", "wg0"],
        ["WGDEVICE_A_PEERS", [peer_attrs(K[3], ips=[(2, bytes([10, 1, 0, 0]), 16)])]],
    ])
    return [first, second]


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def test_dump_to_device_state() -> None:
    state = device_state_from_messages(kernel_dump())
    assert state == DeviceState(
        private_key=K[0], listen_port=51820, fwmark=0x42,
        peers=[
            PeerState(public_key=K[1], preshared_key=K[2], endpoint=("192.0.2.1", 7),
                      persistent_keepalive=25, allowed_ips=[net("10.0.0.0/8")],
                      rx_bytes=10, tx_bytes=20, last_handshake_sec=1_700_000_000,
                      last_handshake_nsec=5),
            PeerState(public_key=K[3], endpoint=("fd00::1", 51820),
                      allowed_ips=[net("fd00::/64"), net("10.1.0.0/16")]),
        ],
    )


def test_set_request_to_calls() -> None:
    request = SetRequest(
        private_key=K[0], listen_port=1, fwmark=0,
        peers=[PeerSet(public_key=K[1], preshared_key=bytes(32), endpoint=("fd00::1", 5),
                       persistent_keepalive=0, replace_allowed_ips=True,
                       allowed_ips=[net("10.0.0.0/8"), net("fd00::/64")], update_only=True),
               PeerSet(public_key=K[2], remove=True, endpoint=("1.2.3.4", 5))])
    assert set_request_to_calls(request) == [
        {"private_key": b64(K[0]), "listen_port": 1, "fwmark": 0},
        {"peer": {"public_key": b64(K[1]), "update_only": True,
                  "preshared_key": b64(bytes(32)), "endpoint_addr": "fd00::1",
                  "endpoint_port": 5, "persistent_keepalive": 0,
                  "replace_allowed_ips": True, "allowed_ips": ["10.0.0.0/8", "fd00::/64"]}},
        {"peer": {"public_key": b64(K[2]), "remove": True}},
    ]
    # nothing to change still reaches the device (wg checks the interface exists)
    assert set_request_to_calls(SetRequest()) == [{}]
    # replace_peers: the running peers are removed first
    current = DeviceState(peers=[PeerState(public_key=K[4])])
    calls = set_request_to_calls(SetRequest(replace_peers=True,
                                            peers=[PeerSet(public_key=K[5])]), current)
    assert calls == [{"peer": {"public_key": b64(K[4]), "remove": True}},
                     {"peer": {"public_key": b64(K[5])}}]
    assert peer_to_pyroute2(PeerSet(public_key=K[5])) == {"public_key": b64(K[5])}


class FakeWireGuard:
    """Stands in for pyroute2.WireGuard: records calls, answers info with kernel_dump()."""

    def __init__(self, error: int | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, dict]] = []
        self.closed = False

    def info(self, ifname: str) -> list[wgmsg]:
        if self.error:
            raise NetlinkError(self.error)
        return kernel_dump()

    def set(self, ifname: str, **kwargs: Any) -> None:
        if self.error:
            raise NetlinkError(self.error)
        self.calls.append((ifname, kwargs))

    def close(self) -> None:
        self.closed = True


def test_kernel_client_get_and_set(tmp_path: Path) -> None:
    fake = FakeWireGuard()
    client = KernelClient(factory=lambda: fake, module_dir=tmp_path)
    assert client.get("wg0").listen_port == 51820 and fake.closed
    client.set("wg0", SetRequest(replace_peers=True, listen_port=5))
    assert fake.calls == [
        ("wg0", {"listen_port": 5}),
        ("wg0", {"peer": {"public_key": b64(K[1]), "remove": True}}),
        ("wg0", {"peer": {"public_key": b64(K[3]), "remove": True}}),
    ]


def test_kernel_errors_like_wg(tmp_path: Path) -> None:
    def no_family() -> None:
        raise NetlinkError(errno.ENOENT, "No such file or directory")

    client = KernelClient(factory=no_family, module_dir=tmp_path)
    # Without the module: a link that exists but cannot be a WireGuard one is "Protocol not
    # supported", as wg says; a name no link has is "No such device", as wg says on a host with
    # the module (the kernel is the reference), not a riddle about protocols.
    for action in (lambda: client.get("lo"), lambda: client.set("lo", SetRequest())):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.EPROTONOSUPPORT
    for action in (lambda: client.get("nosuch0"), lambda: client.set("nosuch0", SetRequest())):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.ENODEV
    client = KernelClient(factory=lambda: FakeWireGuard(errno.ENODEV), module_dir=tmp_path)
    for action in (lambda: client.get("wg9"), lambda: client.set("wg9", SetRequest())):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.ENODEV


def test_kernel_interface_listing(tmp_path: Path) -> None:
    links = lambda: [("lo", None), ("wg0", "wireguard"), ("eth0", "veth"), ("wg1", "wireguard")]
    assert KernelClient(links=links, module_dir=tmp_path).list_interfaces() == ["wg0", "wg1"]
    # no module: no netlink dump at all
    def fail() -> list:
        raise AssertionError("must not dump links without the module")

    assert KernelClient(links=fail, module_dir=tmp_path / "absent").list_interfaces() == []
