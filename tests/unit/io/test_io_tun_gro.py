"""tun_gro.coalesce: which TCP segments become one super-packet, and that the kernel takes it.

The last test hand-drives a TCP connection through a real TUN (vnet header on) in a private
network namespace: the kernel's listener must receive the bytes of a coalesced write intact.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packets import ACK, FIN, PSH, SYN, checksum, tcp4, tcp6, udp4
from private_netns import in_new_netns

from wgpy import fastpath
from wgpy.io import tun_gro


def coalesce(packets: list[bytes]) -> list:
    """tun_gro.coalesce as the daemon calls it (checksums in C when the fast path is built)."""
    return tun_gro.coalesce(packets, fastpath.checksums_valid)


def joined(write: list) -> bytes:
    return b"".join(bytes(part) for part in write[1:])


def vnet(write: list) -> tuple:
    return struct.unpack("<BBHHHH", write[0])


def test_a_run_of_segments_becomes_one_valid_super_packet() -> None:
    payloads = [bytes([i]) * 1000 for i in range(9)] + [b"z" * 300]
    seq = 1_000_000
    packets = []
    for i, payload in enumerate(payloads):
        flags = ACK | PSH if i == len(payloads) - 1 else ACK
        packets.append(tcp4(payload, seq, flags))
        seq += len(payload)
    (write,) = coalesce(packets)
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = vnet(write)
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (
        tun_gro.VNET_HDR_F_NEEDS_CSUM, tun_gro.VNET_HDR_GSO_TCPV4, 40, 1000, 20, 16)
    packet = joined(write)
    assert packet[40:] == b"".join(payloads)
    assert struct.unpack("!H", packet[2:4])[0] == len(packet)
    assert checksum(packet[:20]) == 0  # IPv4 header checksum valid
    assert packet[33] == ACK | PSH  # the last segment's PSH carried over
    # the TCP checksum field holds the pseudo-header sum: completing it over the segment gives
    # the checksum of the whole super-packet computed the ordinary way
    tcp_length = len(packet) - 20
    partial = struct.unpack("!H", packet[36:38])[0]
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, tcp_length)
    unfolded = checksum(pseudo)
    assert partial == ~unfolded & 0xFFFF
    final = checksum(packet[20:])  # what the kernel stores at csum_start + csum_offset
    zeroed = packet[20:36] + b"\0\0" + packet[38:]
    assert final == checksum(pseudo + zeroed)


def test_ipv6_run() -> None:
    packets = [tcp6(b"x" * 1200, 5 + 1200 * i) for i in range(5)]
    (write,) = coalesce(packets)
    _, gso_type, hdr_len, gso_size, csum_start, _ = vnet(write)
    assert (gso_type, hdr_len, gso_size, csum_start) == (tun_gro.VNET_HDR_GSO_TCPV6, 60, 1200, 40)
    packet = joined(write)
    assert struct.unpack("!H", packet[4:6])[0] == len(packet) - 40
    assert packet[60:] == b"x" * 6000


def test_gap_in_sequence_numbers_splits() -> None:
    packets = [tcp4(b"a" * 100, 0), tcp4(b"b" * 100, 100), tcp4(b"c" * 100, 300)]
    writes = coalesce(packets)
    assert len(writes) == 2
    assert joined(writes[0])[40:] == b"a" * 100 + b"b" * 100
    assert writes[1] == [bytes(10), packets[2]]  # a single packet goes with a zero header


def test_interleaved_flows_are_grouped_per_flow_in_order_of_first_packet() -> None:
    a = [tcp4(b"a" * 100, 100 * i, sport=1) for i in range(3)]
    b = [tcp4(b"b" * 100, 100 * i, sport=2) for i in range(3)]
    writes = coalesce([a[0], b[0], a[1], b[1], a[2], b[2]])
    assert [joined(w)[40:] for w in writes] == [b"a" * 300, b"b" * 300]


def test_a_non_candidate_ends_open_groups_so_order_is_kept() -> None:
    icmp = bytes([0x45]) + bytes(8) + bytes([1]) + bytes(30)
    packets = [tcp4(b"a" * 100, 0), icmp, tcp4(b"a" * 100, 100)]
    writes = coalesce(packets)
    assert [w[1] for w in writes] == packets


def test_udp_is_written_datagram_by_datagram_and_ends_open_groups() -> None:
    packets = [udp4(b"a" * 100) for _ in range(3)]
    assert [w[1] for w in coalesce(packets)] == packets
    tcp_and_udp = [tcp4(b"t" * 100, 0), udp4(b"u" * 100), tcp4(b"t" * 100, 100)]
    assert [w[1] for w in coalesce(tcp_and_udp)] == tcp_and_udp


@pytest.mark.parametrize("flags", [SYN | ACK, FIN | ACK, ACK | 0x04, ACK | 0x40, 0])
def test_only_plain_ack_segments_coalesce(flags: int) -> None:
    packets = [tcp4(b"a" * 100, 0), tcp4(b"a" * 100, 100, flags), tcp4(b"a" * 100, 200)]
    assert len(coalesce(packets)) == 3


def test_shorter_segment_psh_options_and_size_limit() -> None:
    short = [tcp4(b"a" * 100, 0), tcp4(b"a" * 50, 100), tcp4(b"a" * 100, 150)]
    assert [len(joined(w)) - 40 for w in coalesce(short)] == [150, 100]
    push = [tcp4(b"a" * 100, 0, ACK | PSH), tcp4(b"a" * 100, 100)]
    assert len(coalesce(push)) == 2
    stamps = [tcp4(b"a" * 100, 0, options=b"\x01\x01\x08\x0a" + bytes(8)),
              tcp4(b"a" * 100, 100, options=b"\x01\x01\x08\x0a" + bytes(7) + b"\x01")]
    assert len(coalesce(stamps)) == 2  # different timestamps: not the same "header"
    pure_acks = [tcp4(b"", 0), tcp4(b"", 0)]
    assert len(coalesce(pure_acks)) == 2
    big = [tcp4(b"q" * 1400, 1400 * i) for i in range(60)]
    sizes = [len(joined(w)) for w in coalesce(big)]
    assert all(size <= 65535 for size in sizes) and sum(sizes) - 40 * len(sizes) == 60 * 1400


@pytest.mark.e2e  # root: a network namespace (tests/conftest.py)
def test_kernel_accepts_coalesced_tcp_writes() -> None:

    from wgpy.io.tun_linux import TunDevice

    def body() -> None:
        tun = TunDevice.create("wgdgro0", vnet_hdr=True)
        assert tun.vnet_hdr
        subprocess.run(["ip", "addr", "add", "10.7.0.1/24", "dev", "wgdgro0"], check=True)
        subprocess.run(["ip", "link", "set", "wgdgro0", "up"], check=True)
        listener = socket.socket()
        listener.bind(("10.7.0.1", 5000))
        listener.listen()
        tun.write_packet(tcp4(b"", 1000, SYN, ack=0))
        for _ in range(50):
            select.select([tun.fileno()], [], [], 2)
            reply = tun.read_packet()
            if reply and reply[9] == 6 and reply[33] & SYN:
                break
        else:
            raise AssertionError("no SYN-ACK")
        server_seq = struct.unpack("!I", reply[24:28])[0] + 1
        tun.write_packet(tcp4(b"", 1001, ACK, ack=server_seq))
        listener.settimeout(2)
        conn, _ = listener.accept()
        data = [os.urandom(1000) for _ in range(20)]
        packets = [tcp4(chunk, 1001 + 1000 * i, ack=server_seq) for i, chunk in enumerate(data)]
        assert len(coalesce(packets)) == 1
        tun.write_batch(packets)
        conn.settimeout(2)
        received = b""
        while len(received) < 20000:
            chunk = conn.recv(65536)
            assert chunk
            received += chunk
        assert received == b"".join(data)
        conn.close()
        listener.close()
        tun.close()

    in_new_netns(body)


# --- property: a coalesced batch cut back into segments is the batch, flow by flow ----------

def _segments(write: list) -> list[tuple]:
    """What the kernel makes of one write: (flow, fields...) per segment, as `_describe`."""
    data = joined(write)
    _flags, gso_type, hdr_len, gso_size, _start, _offset = vnet(write)
    if not gso_type:
        return [_describe(data)]
    header, payload = data[:hdr_len], data[hdr_len:]
    chunks = [payload[i : i + gso_size] for i in range(0, len(payload), gso_size)]
    v6 = gso_type == tun_gro.VNET_HDR_GSO_TCPV6
    tcp_at = 40 if v6 else 20
    seq = struct.unpack_from("!I", header, tcp_at + 4)[0]
    result = []
    for index, chunk in enumerate(chunks):
        segment_flags = header[tcp_at + 13]
        if index < len(chunks) - 1:
            segment_flags &= ~PSH  # the kernel puts PSH on the last segment only
        fixed = header[tcp_at + 8 : tcp_at + 12] + header[tcp_at + 14 : tcp_at + 16] \
            + header[tcp_at + 20 :]
        result.append(("tcp", _flow(header, v6), (seq + index * gso_size) & 0xFFFFFFFF,
                       segment_flags, fixed, chunk))
    return result


def _flow(packet: bytes, v6: bool) -> bytes:
    return packet[8:44] if v6 else packet[12:24]


def _describe(packet: bytes) -> tuple:
    v6 = packet[0] >> 4 == 6
    proto = packet[6] if v6 else packet[9]
    tcp_at = 40 if v6 else 20
    if proto == 6 and len(packet) > tcp_at + 20:
        header_len = tcp_at + ((packet[tcp_at + 12] >> 4) << 2)
        fixed = packet[tcp_at + 8 : tcp_at + 12] + packet[tcp_at + 14 : tcp_at + 16] \
            + packet[tcp_at + 20 : header_len]
        return ("tcp", _flow(packet, v6), struct.unpack_from("!I", packet, tcp_at + 4)[0],
                packet[tcp_at + 13], fixed, packet[header_len:])
    if proto == 17:
        return ("udp", _flow(packet, v6), packet[tcp_at + 8 :])
    return ("other", b"", packet)


_FLOWS = [
    lambda payload, seq, flags, ack: tcp4(payload, seq, flags, ack=ack),
    lambda payload, seq, flags, ack: tcp4(payload, seq, flags, sport=999, ack=ack),
    lambda payload, seq, flags, ack: tcp4(payload, seq, flags, ack=ack,
                                          options=b"\x01\x01\x08\x0a" + bytes(8)),
    lambda payload, seq, flags, ack: tcp6(payload, seq, flags),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("tcp"), st.integers(0, len(_FLOWS) - 1),
                      st.sampled_from([None, None, None, 0, 1, 100, 500]),  # None: full
                      st.sampled_from([ACK, ACK, ACK, ACK | PSH, SYN, FIN | ACK]),
                      st.sampled_from([0, 0, 0, 0, 7]),  # sequence gap
                      st.sampled_from([1, 1, 1, 2])),  # ack number
            st.tuples(st.just("udp"), st.sampled_from([1, 300, 300, 300])),
            st.tuples(st.just("other"), st.just(0)),
        ),
        max_size=80,
    ),
)
def test_coalesced_writes_cut_back_into_the_same_segments_per_flow(story) -> None:
    next_seq = [1000, 5000, 9000, 70000]
    packets = []
    for step in story:
        if step[0] == "tcp":
            _, flow, size, flags, gap, ack = step
            payload = bytes([flow]) * (1200 if size is None else size)
            seq = (next_seq[flow] + gap) & 0xFFFFFFFF
            packets.append(_FLOWS[flow](payload, seq, flags, ack))
            next_seq[flow] = seq + len(payload)
        elif step[0] == "udp":
            packets.append(udp4(b"u" * step[1]))
        else:
            packets.append(bytes([0x45]) + bytes(8) + bytes([1]) + bytes(30))
    writes = coalesce(packets)
    got = [segment for write in writes for segment in _segments(write)]
    want = [_describe(packet) for packet in packets]
    assert sorted(map(repr, got)) == sorted(map(repr, want))  # nothing lost, made up or changed
    for key in {(d[0], d[1]) for d in want}:  # and each flow in its order
        assert [d for d in got if (d[0], d[1]) == key] == [d for d in want if (d[0], d[1]) == key]
    # a packet that is not coalesced is a barrier: nothing crosses it, in either direction
    def barrier(d: tuple) -> bool:
        return d[0] in ("other", "udp") or (
            d[0] == "tcp" and (d[3] & ~PSH != ACK or not d[5]))

    def between_barriers(descriptions: list[tuple]) -> list[list[str]]:
        parts: list[list[str]] = [[]]
        for d in descriptions:
            if barrier(d):
                parts += [[repr(d)], []]
            else:
                parts[-1].append(repr(d))
        return [sorted(part) for part in parts]

    assert between_barriers(got) == between_barriers(want)
    for write in writes:
        assert len(joined(write)) <= tun_gro.MAX_SUPER_PACKET


# --- checksums: a segment the kernel would drop is never hidden inside a super-packet --------
# Merged segments reach TCP as CHECKSUM_PARTIAL, which the kernel does not verify; written alone
# (zero vnet header) each is checked. So every segment is verified before it is merged, as
# wireguard-go's offload_linux.go does, and one that fails goes out on its own, unchanged.

def corrupt(packet: bytes, at: int = -1) -> bytes:
    """The packet with one byte changed and no checksum fixed (payload by default)."""
    data = bytearray(packet)
    data[at] ^= 0x5A
    return bytes(data)


def single(write: list) -> bytes | None:
    """The packet of a write that carries one packet as it came, else None."""
    return write[1] if len(write) == 2 and write[0] == bytes(10) else None


@pytest.mark.parametrize("bad", [0, 1, 2, 4])  # the group's first, second, middle, last
@pytest.mark.parametrize("build", [tcp4, tcp6])
def test_a_segment_with_a_bad_tcp_checksum_is_written_alone(build, bad: int) -> None:
    packets = [build(bytes([i]) * 500, 500 * i) for i in range(5)]
    packets[bad] = corrupt(packets[bad])
    writes = coalesce(packets)
    assert [single(w) for w in writes if single(w) == packets[bad]] == [packets[bad]]
    assert any(single(w) is None for w in writes), "the good segments still coalesce"
    header_len = 60 if build is tcp6 else 40
    others = [joined(w) for w in writes if single(w) != packets[bad]]
    payloads = b"".join(packet[header_len:] for packet in others)
    assert payloads == b"".join(bytes([i]) * 500 for i in range(5) if i != bad)
    # every write in flow order: the bad segment keeps its place
    order = [struct.unpack_from("!I", joined(w), header_len - 16)[0] for w in writes]
    assert order == sorted(order)


def test_a_bad_ipv4_header_checksum_or_checksum_field_is_not_merged() -> None:
    good = [tcp4(b"a" * 300, 300 * i) for i in range(3)]
    bad_ip = corrupt(good[1], 11)  # the IPv4 header checksum
    bad_field = corrupt(good[1], 37)  # the TCP checksum field
    for bad in (bad_ip, bad_field):
        writes = coalesce([good[0], bad, good[2]])
        assert [single(w) for w in writes] == [good[0], bad, good[2]]


def _valid(packet: bytes) -> bool:
    v6 = packet[0] >> 4 == 6
    start = 40 if v6 else 20
    if not v6 and checksum(packet[:20]):
        return False
    pseudo = (packet[8:40] + struct.pack("!I3xB", len(packet) - 40, packet[6]) if v6
              else packet[12:20] + struct.pack("!BBH", 0, packet[9], len(packet) - 20))
    return checksum(pseudo + packet[start:]) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(_FLOWS) - 1), st.sampled_from([None, None, 1, 301]),
                       st.sampled_from([None] * 6 + [-1, 0, 11, 37, 45, 57])),
             max_size=60),
)
def test_corrupted_segments_are_never_merged_and_go_out_unchanged(story) -> None:
    next_seq = [1000, 5000, 9000, 70000]
    packets, corrupted = [], []
    for flow, size, bad_at in story:
        payload = bytes([flow]) * (1200 if size is None else size)
        packet = _FLOWS[flow](payload, next_seq[flow], ACK, 1)
        next_seq[flow] += len(payload)
        if bad_at is not None and bad_at < len(packet) and (bad_at < 20 or bad_at >= 24):
            packet = corrupt(packet, bad_at)  # not the sequence number: that regroups
            if not _valid(packet):
                corrupted.append(packet)
        packets.append(packet)
    writes = coalesce(packets)
    alone = [single(w) for w in writes if single(w) is not None]
    for packet in corrupted:
        assert packet in alone
    # (flow, seq, options) names a segment uniquely in this story
    bad_keys = {repr(_describe(p)[1:3] + _describe(p)[4:5]) for p in corrupted}
    for write in writes:
        if single(write) is None:  # a super-packet: none of its segments was corrupted
            for segment in _segments(write):
                assert repr(segment[1:3] + segment[4:5]) not in bad_keys
    segments = [s for w in writes for s in _segments(w)]
    assert sorted(map(repr, segments)) == sorted(repr(_describe(p)) for p in packets)
