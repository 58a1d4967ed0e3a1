"""The netlink event parser of io/rtnl.py (kernel input, still parsed defensively) and what the
loop does with its findings."""

from __future__ import annotations

import os
import struct

from hypothesis import given
from hypothesis import strategies as st

from wgpy.core.device import Device
from wgpy.core.peer import Peer
from wgpy.io import rtnl
from wgpy.io.rtnl import Changes, parse_messages


def attribute(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def message(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def newlink(ifindex: int, mtu: int | None) -> bytes:
    body = struct.pack("=BxHiII", 0, 0, ifindex, 0, 0)
    body += attribute(3, b"wg0\0")  # IFLA_IFNAME before the MTU
    if mtu is not None:
        body += attribute(rtnl.IFLA_MTU, struct.pack("=I", mtu))
    return message(rtnl.RTM_NEWLINK, body)


def test_our_link_gives_its_mtu_others_are_ignored() -> None:
    changes = Changes()
    parse_messages(newlink(9, 1500) + newlink(7, 1300) + newlink(7, None), 7, changes)
    assert changes.mtu == 1300 and not changes.addresses_or_routes


def test_our_link_leaving_says_so_others_do_not() -> None:
    """RTM_DELLINK reaches the namespace a link leaves, deleted or moved away."""
    def dellink(ifindex: int) -> bytes:
        return message(rtnl.RTM_DELLINK, struct.pack("=BxHiII", 0, 0, ifindex, 0, 0))

    changes = Changes()
    parse_messages(dellink(9), 7, changes)
    assert not changes.link_left
    parse_messages(dellink(7), 7, changes)
    assert changes.link_left and changes.mtu is None
    changes = Changes()
    parse_messages(dellink(7)[:-1], 7, changes)  # truncated
    assert not changes.link_left


def test_the_namespace_of_a_message_is_read_from_its_cmsg() -> None:
    nsid = rtnl.SOL_NETLINK, rtnl.NETLINK_LISTEN_ALL_NSID
    assert rtnl.message_nsid([]) is None  # our own namespace
    assert rtnl.message_nsid([(*nsid, struct.pack("=i", -1))]) is None  # ours, no id
    assert rtnl.message_nsid([(*nsid, struct.pack("=i", 3))]) == 3
    assert rtnl.message_nsid([(*nsid, b"\x03")]) is None  # truncated: not a namespace id


def test_address_and_route_messages_say_so() -> None:
    for kind in (rtnl.RTM_NEWADDR, rtnl.RTM_DELADDR, rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE):
        changes = Changes()
        parse_messages(message(kind, bytes(12)), 7, changes)
        assert changes.addresses_or_routes and changes.mtu is None


def test_truncated_messages_end_the_parse() -> None:
    whole = newlink(7, 1300)
    for cut in range(len(whole)):
        changes = Changes()
        parse_messages(whole[:cut], 7, changes)
        assert changes.mtu is None
    # a message claiming more than the buffer holds, or less than a header
    changes = Changes()
    parse_messages(struct.pack("=IHHII", 4, rtnl.RTM_NEWLINK, 0, 0, 0) + whole, 7, changes)
    assert changes.mtu is None


@given(st.binary(max_size=200), st.integers(0, 20))
def test_any_bytes_parse_without_raising(buffer: bytes, ifindex: int) -> None:
    parse_messages(buffer, ifindex, Changes())


def test_the_loop_forgets_a_source_the_bind_found_gone() -> None:
    """After a flush, the sources UdpBind reported stale are dropped from the core's peers."""
    from wgpy.io.loop import DeviceLoop
    from wgpy.io.memory import MemoryNetwork, MemoryTun, MemoryUdp
    from wgpy.keys import generate_private_key, public_key

    device = Device(rng=os.urandom)
    device.set_private_key(generate_private_key())
    kept, gone = (device.add_peer(public_key(generate_private_key())) for _ in "kg")
    kept.endpoint = ("192.0.2.7", 1, b"source-kept")
    gone.endpoint = ("192.0.2.8", 1, b"source-gone")
    udp = MemoryUdp(MemoryNetwork(), "192.0.2.1")
    udp.open(51820)
    sent = udp.send_batch

    def send_batch(datagrams):
        sent(datagrams)
        udp.stale_sources.add(b"source-gone")

    udp.send_batch = send_batch  # type: ignore[method-assign]
    loop = DeviceLoop(device, MemoryTun(), udp, clock=lambda: 1000.0)
    try:
        assert udp.drops is device.drops  # SEND_BUFFER_FULL lands in the core's counter
        device.set_persistent_keepalive(gone, 25, 1000.0)  # an initiation, from source-gone
        loop.flush()
        assert gone.endpoint == ("192.0.2.8", 1)
        assert kept.endpoint == ("192.0.2.7", 1, b"source-kept")
        assert udp.stale_sources == set()
    finally:
        loop.close()


def test_after_a_route_change_the_loop_asks_once_per_endpoint_and_forgets_the_invalid(
        monkeypatch) -> None:
    from wgpy.io import loop as loop_module
    from wgpy.io.loop import DeviceLoop
    from wgpy.io.memory import MemoryNetwork, MemoryTun, MemoryUdp

    class Checker:
        def __init__(self) -> None:
            self.asked: list[tuple] = []
            self.refreshed = 0

        def refresh(self) -> None:
            self.refreshed += 1

        def still_valid(self, remote: str, source: bytes, check_route: bool) -> bool:
            self.asked.append((remote, source, check_route))
            return source != b"gone"

        def close(self) -> None:
            pass


    device = Device(rng=os.urandom)
    peers = [Peer(bytes([i]) * 32) for i in range(4)]
    peers[0].endpoint = ("192.0.2.1", 1, b"kept")
    peers[1].endpoint = ("192.0.2.1", 1, b"kept")  # the same endpoint: asked once
    peers[2].endpoint = ("192.0.2.2", 1, b"gone")
    peers[3].endpoint = ("192.0.2.3", 1)  # no source: nothing to ask
    device.peers.update({p.public_key: p for p in peers})
    udp = MemoryUdp(MemoryNetwork(), "192.0.2.9")
    udp.open(51820)
    checker = Checker()
    loop = DeviceLoop(device, MemoryTun(), udp, clock=lambda: 1000.0,
                      source_checker=checker)  # type: ignore[arg-type]
    try:
        loop.recheck_sources()
        assert checker.refreshed == 1
        assert sorted(checker.asked) == [("192.0.2.1", b"kept", True),
                                         ("192.0.2.2", b"gone", True)]
        assert [p.endpoint for p in peers] == [("192.0.2.1", 1, b"kept")] * 2 + [
            ("192.0.2.2", 1), ("192.0.2.3", 1)]
        # more cached sources than route lookups allowed: addresses only
        monkeypatch.setattr(loop_module, "SOURCE_ROUTE_CHECKS_MAX", 1)
        checker.asked.clear()
        loop.recheck_sources()
        assert checker.asked == [("192.0.2.1", b"kept", False)]
    finally:
        loop.close()


def test_an_mtu_set_before_the_loop_subscribes_is_followed() -> None:
    """wgpy-quick / the selftest set the MTU right after the daemon made its TUN, possibly
    before the daemon subscribed to link events: that change brings no event, so the loop
    reads the MTU once when it subscribes (before, the daemon kept padding for 1420 behind a
    1340 interface: TestWgThroughWg's tcp_v6 saw its 1376-byte GSO runs refused, EMSGSIZE)."""
    from wgpy.io.loop import DeviceLoop
    from wgpy.io.memory import MemoryNetwork, MemoryTun, MemoryUdp

    device = Device(rng=os.urandom)
    tun = MemoryTun()
    udp = MemoryUdp(MemoryNetwork(), "192.0.2.9")
    udp.open(51820)
    loop = DeviceLoop(device, tun, udp, clock=lambda: 1000.0)
    try:
        tun.mtu = 1340  # `ip link set mtu 1340` before the loop's netlink socket exists
        loop.watch_route_events()  # (a MemoryTun has no link events: none will come)
        assert device.mtu == 1340
    finally:
        loop.close()
