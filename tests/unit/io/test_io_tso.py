"""TSO reads from a real TUN: what the kernel hands a TUN with IFF_VNET_HDR and
TUNSETOFFLOAD(TSO_OFFLOADS), cut by `TunDevice.read_batch` into the packets a NIC would send.

Each test runs in a private network namespace (tests/support/private_netns.py, root). The test
plays the far end of a TCP connection by hand: it reads the kernel's SYN from the TUN, writes a
SYN-ACK back, then ACKs what the kernel sends, so the kernel's own TCP sends super-packets of
up to 64 KB into the TUN. Every packet read must then be a packet the kernel could have put on
a wire: valid IPv4 header and TCP/UDP checksums, at most the MSS of payload, contiguous sequence
numbers, the bytes the socket sent. Both segmenters are run (`impl`: C and pure Python).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import time

import pytest
from fastpath_lib import load_c
from packets import super_packet_of
from private_netns import in_new_netns

from wgpy import _purepath, fastpath
from wgpy.io.tun_linux import TSO_OFFLOADS, TunDevice, TunDropped

pytestmark = pytest.mark.e2e  # root: network namespaces (tests/conftest.py)

MSS = 1000
LOCAL4, REMOTE4 = "10.8.0.1", "10.8.0.2"
LOCAL6, REMOTE6 = "fd08::1", "fd08::2"
PORT = 5001


@pytest.fixture(params=["python", "c"])
def impl(request, monkeypatch):
    module = _purepath if request.param == "python" else load_c()
    monkeypatch.setattr(fastpath, "tso_segment", module.tso_segment)
    return module


def _sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _l4_valid(packet: bytes) -> bool:
    """The IPv4 header checksum and the TCP/UDP checksum with the pseudo-header hold."""
    if packet[0] >> 4 == 4:
        l4 = (packet[0] & 15) * 4
        if _sum(packet[:l4]) != 0xFFFF:
            return False
        pseudo = packet[12:20] + struct.pack("!xBH", packet[9], len(packet) - l4)
    else:
        l4 = 40
        pseudo = packet[8:40] + struct.pack("!I3xB", len(packet) - l4, packet[6])
    return _sum(pseudo + packet[l4:]) == 0xFFFF


def _ip_header(v6: bool, protocol: int, src: str, dst: str, l4_len: int) -> bytes:
    if v6:
        return struct.pack("!IHBB16s16s", 6 << 28, l4_len, protocol, 64,
                           socket.inet_pton(socket.AF_INET6, src),
                           socket.inet_pton(socket.AF_INET6, dst))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + l4_len, 0, 0x4000, 64, protocol, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header[:10] + struct.pack("!H", ~_sum(header) & 0xFFFF) + header[12:]


def _tcp_packet(v6: bool, src: str, dst: str, sport: int, dport: int, seq: int, ack: int,
                flags: int, options: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (5 + len(options) // 4) << 4,
                      flags, 65535, 0, 0) + options
    ip = _ip_header(v6, 6, src, dst, len(tcp))
    pseudo = ip[8:40] + struct.pack("!I3xB", len(tcp), 6) if v6 else (
        ip[12:20] + struct.pack("!xBH", 6, len(tcp)))
    check = ~_sum(pseudo + tcp) & 0xFFFF
    return ip + tcp[:16] + struct.pack("!H", check) + tcp[18:]


def _tcp_fields(packet: bytes) -> tuple[int, int, int, int, bytes]:
    """(l4 offset, seq, ack, flags, payload)."""
    l4 = 40 if packet[0] >> 4 == 6 else (packet[0] & 15) * 4
    seq, ack, offset, flags = struct.unpack_from("!IIBB", packet, l4 + 4)
    return l4, seq, ack, flags, packet[l4 + (offset >> 4) * 4:]


def _read(tun: TunDevice, timeout: float = 3.0) -> list[bytes]:
    ready, _, _ = select.select([tun.fileno()], [], [], timeout)
    assert ready, "nothing to read from the TUN"
    return tun.read_batch(128)


def _record_headers() -> list[tuple[int, int]]:
    """(flags, gso_type) of every read handed to the segmenter from now on."""
    headers: list[tuple[int, int]] = []
    segment = fastpath.tso_segment

    def recording(data: bytes) -> list[bytes]:
        headers.append((data[0], data[1]))
        return segment(data)

    fastpath.tso_segment = recording  # type: ignore[assignment]
    return headers


def _setup(name: str) -> TunDevice:
    tun = TunDevice.create(name, 1500, vnet_hdr=True)
    assert tun.set_offloads(TSO_OFFLOADS)
    subprocess.run(["ip", "addr", "add", f"{LOCAL4}/24", "dev", name], check=True)
    subprocess.run(["ip", "addr", "add", f"{LOCAL6}/64", "dev", name, "nodad"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    return tun


def _stream_through_tun(v6: bool) -> None:
    """A TCP stream from the namespace's kernel to a peer behind the TUN, 200 KB."""
    tun = _setup("wgtso0")
    family = socket.AF_INET6 if v6 else socket.AF_INET
    local, remote = (LOCAL6, REMOTE6) if v6 else (LOCAL4, REMOTE4)
    headers = _record_headers()
    client = socket.socket(family, socket.SOCK_STREAM)
    client.setblocking(False)
    try:
        client.connect((remote, PORT))
    except BlockingIOError:
        pass
    syn = None
    while syn is None:  # (IPv6 brings router solicitations and MLD reports first)
        syn = next((p for p in _read(tun) if p[0] >> 4 == (6 if v6 else 4)
                    and p[6 if v6 else 9] == 6), None)
    assert _l4_valid(syn), "the SYN's partial checksum was not completed right"
    l4, client_seq, _, flags, _ = _tcp_fields(syn)
    assert flags & 0x02
    sport = struct.unpack_from("!H", syn, l4)[0]
    server_seq = 0x7FFFFF00  # the sequence numbers wrap past 2**31 on the way
    mss_option = struct.pack("!BBH", 2, 4, MSS)
    tun.write_packet(_tcp_packet(v6, remote, local, PORT, sport, server_seq, client_seq + 1,
                                 0x12, mss_option))
    data = bytes(range(251)) * 800  # ~200 KB, not a multiple of the MSS
    sent = 0
    received = bytearray()
    next_seq = (client_seq + 1) & 0xFFFFFFFF
    deadline = time.monotonic() + 20
    while len(received) < len(data):
        assert time.monotonic() < deadline, f"only {len(received)} of {len(data)} bytes came"
        if sent < len(data):
            try:
                sent += client.send(data[sent:])
            except BlockingIOError:
                pass
        for packet in _read(tun):
            if packet[0] >> 4 != (6 if v6 else 4) or packet[6 if v6 else 9] != 6:
                continue  # neighbour discovery and such
            assert _l4_valid(packet), "bad checksum in a segment"
            l4, seq, _, flags, payload = _tcp_fields(packet)
            assert len(payload) <= MSS
            if v6:
                assert struct.unpack_from("!H", packet, 4)[0] == len(packet) - 40
            else:
                assert struct.unpack_from("!H", packet, 2)[0] == len(packet)
            if not payload or seq != next_seq:
                continue  # a window probe or a retransmission
            received += payload
            next_seq = (seq + len(payload)) & 0xFFFFFFFF
        # acknowledge all so far: the kernel's window opens and its super-packets grow
        tun.write_packet(_tcp_packet(v6, remote, local, PORT, sport, server_seq + 1, next_seq,
                                     0x10))
    assert bytes(received) == data
    supers = [gso_type for _flags, gso_type in headers if gso_type]
    assert supers, "the kernel sent no super-packet (TSO not on?)"
    assert {t & 0x7F for t in supers} == {4 if v6 else 1}
    client.close()
    tun.close()


def test_tso_super_packets_from_the_kernel_become_valid_segments_v4(impl) -> None:
    in_new_netns(lambda: _stream_through_tun(v6=False))


def test_tso_super_packets_from_the_kernel_become_valid_segments_v6(impl) -> None:
    in_new_netns(lambda: _stream_through_tun(v6=True))


def test_udp_with_checksum_left_to_the_device_is_completed(impl) -> None:
    """With TUN_F_CSUM the kernel leaves UDP checksums to the device (NEEDS_CSUM)."""

    def body() -> None:
        tun = _setup("wgtso1")
        headers = _record_headers()
        for family, remote in ((socket.AF_INET, REMOTE4), (socket.AF_INET6, REMOTE6)):
            sizes = [0, 1, 1371, 1472 if family == socket.AF_INET else 1452]
            with socket.socket(family, socket.SOCK_DGRAM) as sender:
                for size in sizes:
                    sender.sendto(bytes([size & 0xFF]) * size, (remote, 9))
            received: list[bytes] = []
            deadline = time.monotonic() + 3
            while len(received) < len(sizes):
                assert time.monotonic() < deadline, f"{len(received)} of {len(sizes)} came"
                received += [p for p in _read(tun)
                             if p[6 if family == socket.AF_INET6 else 9] == 17]
            for packet, size in zip(received, sizes):
                assert _l4_valid(packet)
                assert len(packet) == (48 if family == socket.AF_INET6 else 28) + size
                assert packet.endswith(bytes([size & 0xFF]) * size)
        assert headers.count((1, 0)) >= 8, "the kernel left no UDP checksum to the device"
        tun.close()

    in_new_netns(body)


def test_a_bad_vnet_header_drops_that_read_only(impl) -> None:
    """A read the segmenter refuses is counted and dropped; the batch's other packets come
    through (TunDropped with the packets, as for any failed TUN read)."""

    def body() -> None:
        tun = TunDevice.create("wgtso2", 1500, vnet_hdr=True)
        assert tun.set_offloads(TSO_OFFLOADS)
        reads = iter([bytes(10) + b"\x45first", b"\x00\x03" + bytes(8) + b"\x45bad",
                      b"\x01", bytes(10) + b"\x45last"])

        def fake_read(fd: int, size: int) -> bytes:
            try:
                return next(reads)
            except StopIteration:
                raise BlockingIOError from None

        real_read = os.read
        os.read = fake_read  # type: ignore[assignment]
        try:
            with pytest.raises(TunDropped) as raised:
                tun.read_batch(128)
        finally:
            os.read = real_read  # type: ignore[assignment]
        assert raised.value.dropped == 2
        assert raised.value.packets == [b"\x45first", b"\x45last"]
        assert tun.bad_reads == 2
        os.read = fake_read  # type: ignore[assignment]
        try:
            assert tun.read_batch(128) == []  # nothing read twice
        finally:
            os.read = real_read  # type: ignore[assignment]
        tun.close()

    in_new_netns(body)


def test_read_packet_hands_out_a_super_packet_one_segment_at_a_time(impl) -> None:
    """read_packet keeps the rest of a super-packet for the next read_packet/read_batch;
    nothing is returned twice."""

    def body() -> None:

        tun = TunDevice.create("wgtso3", 1500, vnet_hdr=True)
        assert tun.set_offloads(TSO_OFFLOADS)
        data = super_packet_of(payload=bytes(range(250)) * 12, gso_size=1000)  # 3 segments
        segments = impl.tso_segment(data)
        assert len(segments) == 3
        reads = [data, bytes(10) + b"\x45after"]

        def fake_read(fd: int, size: int) -> bytes:
            if not reads:
                raise BlockingIOError
            return reads.pop(0)

        real_read = os.read
        os.read = fake_read  # type: ignore[assignment]
        try:
            assert tun.read_packet() == segments[0]
            assert tun.read_packet() == segments[1]
            assert tun.read_batch(128) == [segments[2], b"\x45after"]
            assert tun.read_batch(128) == []
            assert tun.read_packet() is None
        finally:
            os.read = real_read  # type: ignore[assignment]
        tun.close()

    in_new_netns(body)
