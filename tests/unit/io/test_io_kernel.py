"""The real TUN and UDP code against the kernel, each test inside a private network namespace.

Every test body runs in a forked child that unshares its network namespace (root only): the
namespace has just a loopback and whatever the test creates, and it disappears with the child,
so nothing touches the host's network and nothing needs cleaning up.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import subprocess
import time

import pytest
from private_netns import in_new_netns

from wgpy.core.device import Device
from wgpy.io import tun_linux, udp
from wgpy.io.tun_linux import LinkGone, TunDevice, TunDropped

pytestmark = pytest.mark.e2e  # root: network namespaces (tests/conftest.py)


def icmp_echo_request(src: bytes, dst: bytes, ident: int = 7, payload: bytes = b"wgpy") -> bytes:
    def checksum(data: bytes) -> int:
        if len(data) % 2:
            data += b"\0"
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        return ~total & 0xFFFF

    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


def wait_readable(fd: int, timeout: float = 2.0) -> None:
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "nothing to read"


def _tun_roundtrip(vnet_hdr: bool) -> None:
    tun = TunDevice.create("wgdtun0", 1420, vnet_hdr=vnet_hdr)
    assert tun_linux.get_mtu("wgdtun0") == 1420
    assert tun.vnet_hdr == vnet_hdr
    assert tun.read_packet() is None  # non-blocking
    # while the link is down the kernel refuses writes (EIO): dropped and said so, not "link
    # gone"; a batch is written to the end and counts every packet lost
    with pytest.raises(TunDropped) as raised:
        tun.write_packet(icmp_echo_request(bytes([10, 7, 0, 2]), bytes([10, 7, 0, 1])))
    assert (raised.value.errno, raised.value.dropped) == (errno.EIO, 1)
    with pytest.raises(TunDropped) as raised:
        tun.write_batch([icmp_echo_request(bytes([10, 7, 0, 2]), bytes([10, 7, 0, 1]))] * 2)
    assert (raised.value.errno, raised.value.dropped) == (errno.EIO, 2)
    subprocess.run(["ip", "addr", "add", "10.7.0.1/24", "dev", "wgdtun0"], check=True)
    subprocess.run(["ip", "link", "set", "wgdtun0", "up"], check=True)
    # a ping from "the tunnel" to the interface's own address: the kernel answers into the TUN
    tun.write_packet(icmp_echo_request(bytes([10, 7, 0, 2]), bytes([10, 7, 0, 1])))
    for _ in range(20):
        wait_readable(tun.fileno())
        packet = tun.read_packet()
        if packet and packet[0] >> 4 == 4 and packet[9] == 1 and packet[20] == 0:
            break
    else:
        raise AssertionError("no echo reply")
    assert packet[12:16] == bytes([10, 7, 0, 1]) and packet[16:20] == bytes([10, 7, 0, 2])
    assert packet.endswith(b"wgpy")
    # garbage is refused by the kernel (EINVAL): one packet dropped
    with pytest.raises(TunDropped) as raised:
        tun.write_packet(b"\x00garbage")
    assert (raised.value.errno, raised.value.dropped) == (errno.EINVAL, 1)
    # deleting the link wakes the reader, which reports LinkGone
    subprocess.run(["ip", "link", "del", "wgdtun0"], check=True)
    wait_readable(tun.fileno())
    try:
        while tun.read_packet() is not None:
            pass
    except LinkGone:
        pass
    else:
        raise AssertionError("LinkGone not raised")
    tun.close()


def test_tun_carries_packets_both_ways_and_reports_link_deletion() -> None:
    in_new_netns(lambda: _tun_roundtrip(vnet_hdr=False))


def test_tun_with_vnet_header_reads_and_writes_plain_packets() -> None:
    if not tun_linux.tun_features() & tun_linux.IFF_VNET_HDR:
        pytest.skip("kernel TUN lacks IFF_VNET_HDR")
    in_new_netns(lambda: _tun_roundtrip(vnet_hdr=True))


def test_tun_adopted_from_an_fd_knows_its_name_and_header_mode() -> None:
    def body() -> None:
        for vnet_hdr in (False, True):
            tun = TunDevice.create("wgdtun1", vnet_hdr=vnet_hdr)
            copy = TunDevice.from_fd(os.dup(tun.fileno()))
            assert copy.name == "wgdtun1"
            assert copy.vnet_hdr == tun.vnet_hdr == vnet_hdr
            assert not os.get_blocking(copy.fileno())
            copy.close()
            tun.close()

    in_new_netns(body)


def test_tun_rejects_bad_names() -> None:
    with pytest.raises(ValueError):
        TunDevice.create("x" * 16)


def _exchange(bind: udp.UdpBind, host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as peer:
        peer.bind((host, 0))
        peer.sendto(b"one", (host, bind.port))
        peer.sendto(b"two", (host, bind.port))
        sock = bind.sock6 if family == socket.AF_INET6 else bind.sock4
        wait_readable(sock.fileno())
        out: list = []
        for _ in range(10):
            bind.receive_batch(sock, out, 64)
            if len(out) == 2:
                break
            wait_readable(sock.fileno())
        peer_addr = peer.getsockname()[:2]
        assert [(data, src[:2]) for data, src in out] == [(b"one", peer_addr), (b"two", peer_addr)]
        # the third item is the local address the datagram arrived at (in_pktinfo/in6_pktinfo)
        assert all(type(src) is tuple and udp.source_address(src[2])[0] == host for _, src in out)
        bind.send_batch([(b"back", peer_addr)])
        peer.settimeout(2)
        data, addr = peer.recvfrom(100)
        assert data == b"back" and addr[1] == bind.port


def test_udp_binds_one_port_for_both_families_and_moves_datagrams() -> None:
    def body() -> None:
        bind = udp.UdpBind()
        port = bind.open(0)
        assert port != 0
        assert bind.sock4.getsockname()[1] == port
        assert bind.sock6.getsockname()[1] == port
        assert bind.sock6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        # receives never block, even though the sockets are in blocking mode for sends
        out: list = []
        bind.receive_batch(bind.sock4, out, 8)
        assert out == []
        _exchange(bind, "127.0.0.1")
        _exchange(bind, "::1")
        # a v4-mapped endpoint goes out over the IPv4 socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            assert bind.send(b"mapped", ("::ffff:127.0.0.1", peer.getsockname()[1]))
            peer.settimeout(2)
            assert peer.recvfrom(100)[0] == b"mapped"
        bind.close()

    in_new_netns(body)


def test_udp_rebind_and_port_in_use() -> None:
    def body() -> None:
        bind = udp.UdpBind()
        bind.open(0)
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        blocker.bind(("0.0.0.0", 0))
        taken = blocker.getsockname()[1]
        old = bind.port
        try:
            bind.open(taken)
        except OSError as e:
            assert e.errno == 98
        else:
            raise AssertionError("bound a port in use")
        assert bind.port == old and bind.sock4.getsockname()[1] == old  # old sockets kept
        free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        free.bind(("0.0.0.0", 0))
        wanted = free.getsockname()[1]
        free.close()
        assert bind.open(wanted) == wanted
        assert bind.sock6.getsockname()[1] == wanted
        blocker.close()
        bind.close()

    in_new_netns(body)


def test_udp_fwmark_applies_to_bound_and_new_sockets() -> None:
    def body() -> None:
        bind = udp.UdpBind()
        bind.open(0)
        bind.set_mark(0x1234)
        for sock in bind.sockets():
            assert sock.getsockopt(socket.SOL_SOCKET, udp.SO_MARK) == 0x1234
        bind.open(0)
        for sock in bind.sockets():
            assert sock.getsockopt(socket.SOL_SOCKET, udp.SO_MARK) == 0x1234
        bind.set_mark(0)
        assert bind.sock4.getsockopt(socket.SOL_SOCKET, udp.SO_MARK) == 0
        bind.close()

    in_new_netns(body)


def test_udp_gso_send_and_gro_receive_split_into_the_original_datagrams() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.getsockopt(udp.SOL_UDP, udp.UDP_SEGMENT)
            probe.setsockopt(udp.SOL_UDP, udp.UDP_GRO, 1)
        except OSError:
            pytest.skip("kernel without UDP_SEGMENT/UDP_GRO")

    def body() -> None:
        sender = udp.UdpBind(want_gso=True)
        sender.open(0)
        receiver = udp.UdpBind(want_gro=True)
        receiver.open(0)
        assert sender.gso and receiver.gro
        datagrams = [(bytes([i]) * 1000, ("127.0.0.1", receiver.port)) for i in range(10)]
        datagrams.append((b"tail", ("127.0.0.1", receiver.port)))
        sender.send_batch(datagrams)
        out: list = []
        for _ in range(20):
            wait_readable(receiver.sock4.fileno())
            receiver.receive_batch(receiver.sock4, out, 64)
            if len(out) >= len(datagrams):
                break
        assert [d for d, _ in out] == [d for d, _ in datagrams]
        assert all(src[:2] == ("127.0.0.1", sender.port) for _, src in out)
        sender.close()
        receiver.close()

    in_new_netns(body)


def _addresses_on_lo(*addresses: str) -> None:
    for address in addresses:
        prefix = "/128" if ":" in address else "/32"
        subprocess.run(["ip", "addr", "add", address + prefix, "dev", "lo", "nodad"]
                       if ":" in address else ["ip", "addr", "add", address + prefix, "dev", "lo"],
                       check=True)


def _receive(bind: udp.UdpBind, sock: socket.socket, count: int) -> list:
    out: list = []
    for _ in range(20):
        wait_readable(sock.fileno())
        bind.receive_batch(sock, out, 64)
        if len(out) >= count:
            break
    return out


def _sticky_source_round(gro: bool, first: str, second: str) -> None:
    """A peer at `first` sends to our `second` address; replies come from `second` (the routing
    would pick `first`, the destination's own address); once `second` is gone they come from
    the routing's choice and the source is reported stale."""
    family = socket.AF_INET6 if ":" in first else socket.AF_INET
    bind = udp.UdpBind(want_gso=gro, want_gro=gro)
    bind.open(0)
    sock = bind.sock6 if family == socket.AF_INET6 else bind.sock4
    with socket.socket(family, socket.SOCK_DGRAM) as peer:
        peer.bind((first, 0))
        peer.settimeout(2)
        for i in range(4):
            peer.sendto(bytes([i]) * 500, (second, bind.port))
        out = _receive(bind, sock, 4)
        assert len(out) == 4
        src = out[0][1]
        assert src[:2] == peer.getsockname()[:2]
        assert udp.source_address(src[2])[0] == second
        # a single reply, then a batch (a GSO run when the kernel has it) to the same endpoint
        assert bind.send(b"single", src)
        bind.send_batch([(b"r" * 600, src)] * 3)
        for expected in [b"single"] + [b"r" * 600] * 3:
            data, addr = peer.recvfrom(2000)
            assert (data, addr[0]) == (expected, second)
        # the address leaves the host: the send goes out from the routing's choice
        subprocess.run(["ip", "addr", "del", second + ("/128" if ":" in second else "/32"),
                        "dev", "lo"], check=True)
        assert bind.send(b"fallback", src)
        data, addr = peer.recvfrom(2000)
        assert data == b"fallback" and addr[0] != second
        bind.send_batch([(b"f" * 600, src)] * 3)
        for _ in range(3):
            data, addr = peer.recvfrom(2000)
            assert data == b"f" * 600 and addr[0] != second
        assert bind.stale_sources == {src[2]}
        assert bind.send_errors == 0
    bind.close()
    _addresses_on_lo(second)  # for the next round


def test_udp_replies_come_from_the_address_the_peer_sent_to() -> None:
    def body() -> None:
        _addresses_on_lo("10.7.0.1", "10.7.0.2", "fd00:7::1", "fd00:7::2")
        for gro in (False, True):
            _sticky_source_round(gro, "10.7.0.1", "10.7.0.2")
            _sticky_source_round(gro, "fd00:7::1", "fd00:7::2")

    in_new_netns(body)


def test_route_events_and_source_checks_against_the_kernel() -> None:
    from wgpy.io.rtnl import RouteEvents, SourceChecker

    def body() -> None:
        subprocess.run(["ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"],
                       check=True)
        for command in (["ip", "link", "set", "va", "up"], ["ip", "link", "set", "vb", "up"],
                        ["ip", "addr", "add", "10.8.0.1/24", "dev", "va"],
                        ["ip", "addr", "add", "fd00:8::1/64", "dev", "va", "nodad"]):
            subprocess.run(command, check=True)
        va, vb = socket.if_nametoindex("va"), socket.if_nametoindex("vb")
        events = RouteEvents(va)
        subprocess.run(["ip", "link", "set", "va", "mtu", "1300"], check=True)
        subprocess.run(["ip", "link", "set", "vb", "mtu", "1280"], check=True)
        wait_readable(events.fileno())
        changes = events.read()
        assert changes.mtu == 1300  # vb's 1280 is not ours
        # (no check that nothing else changed: va's link-local address may finish DAD now)
        subprocess.run(["ip", "addr", "add", "10.8.0.5/24", "dev", "va"], check=True)
        wait_readable(events.fileno())
        assert events.read().addresses_or_routes
        events.close()

        def v4(ifindex: int, address: str) -> bytes:
            packed = socket.inet_aton(address)
            return struct.pack("i", ifindex) + packed + packed

        def v6(address: str) -> bytes:
            return socket.inet_pton(socket.AF_INET6, address) + bytes(4)

        checker = SourceChecker()
        checker.refresh()
        assert checker.still_valid("10.8.0.2", v4(va, "10.8.0.1"))
        assert checker.still_valid("10.8.0.2", v4(va, "10.8.0.5"))
        assert not checker.still_valid("10.8.0.2", v4(va, "10.8.0.9"))  # not ours
        assert not checker.still_valid("10.8.0.2", v4(vb, "10.8.0.1"))  # route moved
        assert checker.still_valid("fd00:8::2", v6("fd00:8::1"))
        assert not checker.still_valid("fd00:8::2", v6("fd00:8::9"))
        subprocess.run(["ip", "addr", "del", "10.8.0.1/24", "dev", "va"], check=True)
        checker.refresh()
        assert not checker.still_valid("10.8.0.2", v4(va, "10.8.0.1"))
        checker.close()

    in_new_netns(body)


def test_the_mtu_is_followed_after_the_interface_moved_to_another_namespace() -> None:
    """netns.sh's setup: the daemon stays in its namespace, its interface moves to another.
    The loop's link socket sees it leave (RTM_DELLINK), is re-made where it went, and follows
    the MTU there; current_mtu (the fallback poll) asks there too. Before, both asked the
    daemon's own namespace (SIOCGIFMTU by name: ENODEV) and the MTU stayed 1420 for good."""
    from wgpy.io.loop import DeviceLoop
    from wgpy.io.memory import MemoryNetwork, MemoryUdp

    def body() -> None:
        other = f"wgpy-unit-moved-{os.getpid()}"
        tun = TunDevice.create("wgmv0", 1420)
        device = Device(rng=os.urandom)
        udp = MemoryUdp(MemoryNetwork(), "192.0.2.9")
        udp.open(51820)
        loop = DeviceLoop(device, tun, udp, clock=lambda: 1000.0)
        subprocess.run(["ip", "netns", "add", other], check=True)
        try:
            loop.watch_route_events()
            subprocess.run(["ip", "link", "set", "wgmv0", "mtu", "1400"], check=True)
            loop.run_once(0.5)
            assert device.mtu == 1400
            subprocess.run(["ip", "link", "set", "wgmv0", "netns", other], check=True)
            loop.run_once(0.5)  # the link left: its socket is re-made in `other`
            assert tun.current_mtu() == 1400
            for mtu in (1300, 1380):
                subprocess.run(["ip", "-n", other, "link", "set", "wgmv0", "mtu", str(mtu)],
                               check=True)
                for _ in range(10):
                    loop.run_once(0.2)
                    if device.mtu == mtu:
                        break
                assert device.mtu == mtu
                assert tun.current_mtu() == mtu
            # and back again: the link's index may change with each move
            subprocess.run(["ip", "-n", other, "link", "set", "wgmv0", "netns",
                            str(os.getpid())], check=True)
            loop.run_once(0.5)
            subprocess.run(["ip", "link", "set", "wgmv0", "mtu", "1320"], check=True)
            for _ in range(10):
                loop.run_once(0.2)
                if device.mtu == 1320:
                    break
            assert device.mtu == 1320
            # watching it there must not keep that namespace alive: deleted, it takes the
            # interface with it (a socket made inside it would hold it, and the daemon would
            # never learn its interface is gone)
            subprocess.run(["ip", "link", "set", "wgmv0", "netns", other], check=True)
            loop.run_once(0.5)
            subprocess.run(["ip", "netns", "del", other], check=True)
            deadline = time.monotonic() + 10  # (the kernel cleans a namespace up later)
            while time.monotonic() < deadline:
                loop.run_once(0.1)
                time.sleep(0.05)
                try:
                    os.close(tun.netns_fd())  # (an open fd would hold the namespace too)
                except OSError as e:
                    assert e.errno == errno.EBADFD
                    break
            else:
                raise AssertionError("the interface outlived its deleted namespace")
        finally:
            loop.close()
            tun.close()
            subprocess.run(["ip", "netns", "del", other], check=False, capture_output=True)

    in_new_netns(body)


def test_udp_send_to_a_full_buffer_drops_and_counts_instead_of_blocking() -> None:
    """A qdisc that holds every datagram (tbf at 8 kbit/s) fills the socket's send buffer; the
    next sends must come back at once, counted as SEND_BUFFER_FULL. (A blocking send would wait
    minutes here: the alarm turns that into a failure.)"""
    import signal

    from wgpy.errors import DropReason

    def body() -> None:
        for command in (["ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"],
                        ["ip", "link", "set", "va", "up"], ["ip", "link", "set", "vb", "up"],
                        ["ip", "addr", "add", "10.8.0.1/24", "dev", "va"],
                        ["ip", "neigh", "add", "10.8.0.2", "lladdr", "02:00:00:00:00:02",
                         "dev", "va"],
                        ["tc", "qdisc", "add", "dev", "va", "root", "tbf", "rate", "8kbit",
                         "burst", "1600", "limit", "100000000"]):
            subprocess.run(command, check=True)
        bind = udp.UdpBind(want_gso=True)
        bind.open(0)
        bind.sock4.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

        def blocked(_signum: int, _frame: object) -> None:
            raise AssertionError("a UDP send blocked the loop")

        signal.signal(signal.SIGALRM, blocked)
        signal.alarm(10)
        try:
            for _ in range(20):
                bind.send(b"x" * 1000, ("10.8.0.2", 9))
            bind.send_batch([(b"y" * 1000, ("10.8.0.2", 9))] * 20)  # a GSO run when available
        finally:
            signal.alarm(0)
        dropped = bind.drops[DropReason.SEND_BUFFER_FULL]
        assert 20 <= dropped < 40, dropped
        assert bind.send_errors == 0
        bind.close()

    in_new_netns(body)
