"""control/apply.py: wireguard-go's set semantics on the real Device, through the real codec.

Requests are written as UAPI text (what `wg` sends) and parsed with the codec, so each test
reads like the protocol exchange it pins.
"""

from __future__ import annotations

import errno
import ipaddress
import secrets

import pytest

from wgpy.control.apply import ApplyError, apply_set, device_state
from wgpy.control.uapi import UapiError, format_get, parse_get, parse_set
from wgpy.core.device import Device
from wgpy.io.clock import wall_clock_of
from wgpy.keys import generate_private_key, public_key

NOW = 1000.0


class FakeNet:
    """The IO side of apply: records rebinds/marks; `busy` ports fail like EADDRINUSE."""

    def __init__(self) -> None:
        self.port = 40000
        self.mark = 0
        self.busy: set[int] = set()
        self.mark_fails = False
        self.calls: list[tuple[str, int]] = []

    def rebind(self, port: int) -> int:
        self.calls.append(("rebind", port))
        if port in self.busy:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        self.port = port or 50000 + len(self.calls)
        return self.port

    def set_mark(self, mark: int) -> None:
        self.calls.append(("mark", mark))
        if self.mark_fails:
            raise OSError(errno.EPERM, "Operation not permitted")
        self.mark = mark


def key() -> tuple[bytes, bytes]:
    private = generate_private_key()
    return private, public_key(private)


@pytest.fixture
def device() -> Device:
    dev = Device(rng=secrets.token_bytes)
    dev.listen_port = 40000
    return dev


def apply(device: Device, net: FakeNet | None, text: str) -> None:
    apply_set(device, parse_set(text), net, NOW)


def net_of(device: Device, *networks: str) -> list:
    return [ipaddress.ip_network(n) for n in networks]


def test_device_fields(device: Device) -> None:
    net = FakeNet()
    private, public = key()
    apply(device, net, f"private_key={private.hex()}\nlisten_port=51820\nfwmark=42\n")
    assert device.private_key == private and device.public_key == public
    assert device.listen_port == 51820 and net.port == 51820
    assert device.fwmark == 42 and net.mark == 42
    # the same port again is no rebind; port 0 is a new random port (wireguard-go)
    net.calls.clear()
    apply(device, net, "listen_port=51820\n")
    assert net.calls == []
    apply(device, net, "listen_port=0\n")
    assert net.calls == [("rebind", 0)] and device.listen_port == net.port != 0
    # zero key clears, fwmark 0 clears
    apply(device, net, f"private_key={'00' * 32}\nfwmark=0\n")
    assert device.private_key is None and device.fwmark == 0 and net.mark == 0


def test_port_in_use_is_eaddrinuse_and_nothing_changes(device: Device) -> None:
    net = FakeNet()
    net.busy.add(51000)
    _, peer_key = key()
    private, _ = key()
    with pytest.raises(ApplyError) as info:
        apply(device, net, f"private_key={private.hex()}\nfwmark=9\nlisten_port=51000\n"
                           f"public_key={peer_key.hex()}\nallowed_ip=10.0.0.0/8\n")
    assert info.value.errno == errno.EADDRINUSE
    assert device.private_key is None and device.peers == {}
    assert device.listen_port == 40000 and device.fwmark == 0
    assert net.mark == 0  # the mark set before the failed bind was put back


def test_fwmark_failure_is_eaddrinuse_as_wireguard_go(device: Device) -> None:
    net = FakeNet()
    net.mark_fails = True
    with pytest.raises(ApplyError) as info:
        apply(device, net, "fwmark=5\nlisten_port=6000\n")
    assert info.value.errno == errno.EADDRINUSE
    assert device.fwmark == 0 and device.listen_port == 40000
    assert ("rebind", 6000) not in net.calls


def test_peer_create_update_and_fields(device: Device) -> None:
    _, peer_key = key()
    psk = secrets.token_bytes(32)
    apply(device, None,
          f"public_key={peer_key.hex()}\npreshared_key={psk.hex()}\nendpoint=[fd00::1]:51820\n"
          "persistent_keepalive_interval=0\nallowed_ip=10.0.0.0/24\nallowed_ip=fd00::/64\n"
          "protocol_version=1\n")
    peer = device.get_peer(peer_key)
    assert peer is not None
    assert peer.preshared_key == psk
    assert peer.endpoint == ("fd00::1", 51820)
    assert device.allowed_ips.entries_for(peer) == net_of(device, "10.0.0.0/24", "fd00::/64")
    # a second set adds prefixes, psk zero clears
    apply(device, None, f"public_key={peer_key.hex()}\npreshared_key={'00' * 32}\n"
                        "allowed_ip=10.1.0.0/16\n")
    assert peer.preshared_key == bytes(32)
    assert len(device.allowed_ips.entries_for(peer)) == 3
    # replace_allowed_ips drops them before the new ones
    apply(device, None, f"public_key={peer_key.hex()}\nreplace_allowed_ips=true\n"
                        "allowed_ip=192.168.0.0/16\n")
    assert device.allowed_ips.entries_for(peer) == net_of(device, "192.168.0.0/16")


def test_allowed_ip_moves_to_its_new_owner(device: Device) -> None:
    _, first = key()
    _, second = key()
    apply(device, None, f"public_key={first.hex()}\nallowed_ip=10.0.0.0/24\n"
                        f"public_key={second.hex()}\nallowed_ip=10.0.0.0/24\n")
    assert device.allowed_ips.entries_for(device.get_peer(first)) == []
    assert device.allowed_ips.entries_for(device.get_peer(second)) == net_of(device,
                                                                             "10.0.0.0/24")


def test_update_only_and_remove(device: Device) -> None:
    _, known = key()
    _, unknown = key()
    apply(device, None, f"public_key={known.hex()}\n")
    apply(device, None, f"public_key={unknown.hex()}\nupdate_only=true\nallowed_ip=10.0.0.0/8\n"
                        f"public_key={known.hex()}\nupdate_only=true\nendpoint=10.0.0.1:1\n")
    assert list(device.peers) == [known]
    assert device.get_peer(known).endpoint == ("10.0.0.1", 1)
    apply(device, None, f"public_key={known.hex()}\nremove=true\n"
                        f"public_key={unknown.hex()}\nremove=true\n")
    assert device.peers == {}


def test_replace_peers(device: Device) -> None:
    _, first = key()
    _, second = key()
    apply(device, None, f"public_key={first.hex()}\nallowed_ip=10.0.0.0/8\n")
    apply(device, None, f"replace_peers=true\npublic_key={second.hex()}\n")
    assert list(device.peers) == [second]
    apply(device, None, "replace_peers=true\n")
    assert device.peers == {}


def test_own_public_key_as_peer_is_ignored_and_a_new_key_removes_its_peer(device: Device) -> None:
    private, public = key()
    apply(device, None, f"private_key={private.hex()}\npublic_key={public.hex()}\n"
                        "allowed_ip=10.0.0.0/8\n")
    assert device.peers == {}
    other_private, other_public = key()
    apply(device, None, f"public_key={other_public.hex()}\n")
    apply(device, None, f"private_key={other_private.hex()}\n")
    assert device.peers == {}  # the peer with our new public key went away


def test_keepalive_raised_from_zero_is_sent_at_once_to_the_new_endpoint(device: Device) -> None:
    private, _ = key()
    _, peer_key = key()
    apply(device, None, f"private_key={private.hex()}\n")
    apply(device, None, f"public_key={peer_key.hex()}\npersistent_keepalive_interval=25\n"
                        "endpoint=192.0.2.7:51820\nallowed_ip=10.0.0.0/8\n")
    assert device.get_peer(peer_key).persistent_keepalive == 25
    # no session yet: the keepalive starts a handshake, sent to the endpoint of this request
    assert [(len(d), ep) for d, ep in device.take_datagrams()] == [(148, ("192.0.2.7", 51820))]
    apply(device, None, f"public_key={peer_key.hex()}\npersistent_keepalive_interval=30\n")
    assert device.take_datagrams() == []  # only a raise from 0 sends


def test_state_round_trips_through_the_codec(device: Device) -> None:
    private, _ = key()
    _, peer_key = key()
    apply(device, FakeNet(), f"private_key={private.hex()}\nlisten_port=51820\nfwmark=3\n"
                             f"public_key={peer_key.hex()}\nendpoint=10.0.0.1:5\n"
                             "persistent_keepalive_interval=7\nallowed_ip=10.9.0.0/16\n")
    peer = device.get_peer(peer_key)
    peer.rx_bytes, peer.tx_bytes = 123, 456
    state = parse_get(format_get(device_state(device, wall_clock_of)))
    assert state.private_key == private and state.listen_port == 51820 and state.fwmark == 3
    (got,) = state.peers
    assert got.public_key == peer_key and got.endpoint == ("10.0.0.1", 5)
    assert got.persistent_keepalive == 7 and got.rx_bytes == 123 and got.tx_bytes == 456
    assert got.allowed_ips == net_of(device, "10.9.0.0/16")
    assert (got.last_handshake_sec, got.last_handshake_nsec) == (0, 0)  # never


def test_the_private_key_is_stored_clamped(device: Device) -> None:
    """The kernel (curve25519_clamp_secret) and wireguard-go (clamp in SetPrivateKey) keep
    the clamped key: `wg show IF private-key` after setting an unclamped one prints the
    clamped one (the kernel selftest's "private key stored clamped")."""
    unclamped = bytes([0xFF] * 32)
    clamped = bytes([0xF8]) + bytes([0xFF] * 30) + bytes([0x7F])
    apply(device, FakeNet(), f"private_key={unclamped.hex()}\n")
    state = parse_get(format_get(device_state(device, wall_clock_of)))
    assert state.private_key == clamped
    assert device.public_key == public_key(clamped)
    # setting the unclamped key again is the same key: nothing changes (sessions are kept)
    identity = device.identity
    apply(device, FakeNet(), f"private_key={unclamped.hex()}\n")
    assert device.identity is identity


def test_last_handshake_is_converted_from_monotonic_to_wall_clock() -> None:
    # a handshake 2.5 s ago in the monotonic domain, "now" fixed on both clocks
    sec, nsec = wall_clock_of(997.5, now_monotonic_ns=1000 * 10**9,
                              now_wall_ns=1_700_000_000 * 10**9)
    assert (sec, nsec) == (1_699_999_997, 500_000_000)
    assert wall_clock_of(None) == (0, 0)


def test_parse_errors_reach_the_client_before_anything_is_applied(device: Device) -> None:
    _, peer_key = key()
    with pytest.raises(UapiError):
        apply(device, None, f"public_key={peer_key.hex()}\nallowed_ip=10.0.0.0/8\n"
                            "persistent_keepalive_interval=70000\n")
    assert device.peers == {}
