"""The real TUN and UDP code against the kernel, each test inside a private network namespace.

Every test body runs in a forked child that unshares its network namespace (root only): the
namespace has just a loopback and whatever the test creates, and it disappears with the child,
so nothing touches the host's network and nothing needs cleaning up.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
import subprocess
import traceback
from collections.abc import Callable

import pytest

from wgpy.io import tun_linux, udp
from wgpy.io.tun_linux import LinkGone, TunDevice, TunDropped

CLONE_NEWNET = 0x40000000

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def in_new_netns(body: Callable[[], None]) -> None:
    """Run `body` in a child process with a fresh network namespace; re-raise its failure."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(reader)
        status = 0
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            body()
        except BaseException:  # noqa: BLE001 - everything goes back to the parent as text
            os.write(writer, traceback.format_exc().encode())
            status = 1
        finally:
            os.close(writer)
            os._exit(status)
    os.close(writer)
    report = b""
    while chunk := os.read(reader, 65536):
        report += chunk
    os.close(reader)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        pytest.fail("in the namespace:\n" + report.decode(errors="replace"), pytrace=False)


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
        assert out == [(b"one", peer_addr), (b"two", peer_addr)]
        assert all(type(src) is tuple and len(src) == 2 for _, src in out)
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
        assert all(src == ("127.0.0.1", sender.port) for _, src in out)
        sender.close()
        receiver.close()

    in_new_netns(body)
