"""GRO for the TUN: coalesce consecutive TCP segments of a flow into one super-packet.

Writing a packet into a TUN costs a syscall plus a trip through the kernel's receive path per
packet; for a TCP stream that is most of the receiving side's time. With IFF_VNET_HDR the
kernel accepts one large TCP packet plus a `virtio_net_hdr` saying "GSO TCP, segment size N,
checksum partial", and hands it to TCP as one skb, as NIC GRO would. wireguard-go (tun/
offload_linux.go) does the same; the rules here are the conservative subset:

- IPv4 without options and not fragmented, or IPv6 with TCP as the first next header.
- Flags ACK or ACK|PSH only (no SYN/FIN/RST/URG/ECE/CWR), a non-empty payload.
- Same addresses, ports, TOS/traffic class, TTL/hop limit, DF, ACK number, window, and
  byte-identical TCP options (timestamps included) as the first segment of the group.
- Sequence numbers contiguous; every segment as long as the first except the last, which may
  be shorter; a shorter segment or PSH ends the group; at most 64 KB in all.

UDP is written datagram by datagram: coalescing a flow's datagrams into one UDP GSO packet was
measured and not adopted (README, "Measured and not adopted").

Anything else is written as it came, and a packet that is not a candidate ends every open
group, so the order of packets within a flow never changes. The super-packet's checksum field
holds the pseudo-header sum (CHECKSUM_PARTIAL, as a NIC expects it), and the kernel treats a
partial checksum on receive as verified. So every segment's checksums (the IPv4 header's and
the TCP one) are verified before it is merged, as wireguard-go does and as the kernel would
have done with the segment written alone: WireGuard authenticated the bytes, not that the peer
computed them right. A segment that fails is written on its own, as it came, for the kernel to
drop; it ends the open groups like any non-candidate. A group's first segment is verified when
a second one joins it (a segment that stays alone needs no check from us).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

# checksums_valid(packet, l4_start, protocol): the IPv4 header and TCP checksums of a segment
# before it joins a group. The caller hands it in: tun_linux fastpath.checksums_valid (in C when
# the fast path is built: ~0.2 against ~3 µs per 1440 B segment; bench/fastpath.py),
# _purepath.gro_coalesce its own.
ChecksumsValid = Callable[[Any, int, int], bool]

VNET_HDR_F_NEEDS_CSUM = 1
VNET_HDR_GSO_TCPV4 = 1
VNET_HDR_GSO_TCPV6 = 4
MAX_SUPER_PACKET = 65535
_TCP_ACK = 0x10
_TCP_PSH = 0x08

_vnet_hdr = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_ipv4_words = struct.Struct("!10H")
_ZERO_VNET_HDR = bytes(10)

# A write: the iovec list for os.writev, starting with the vnet header.
Write = list


class _Group:
    __slots__ = ("header_len", "key", "next_seq", "open", "packets", "payload", "segment", "v6")
    # `packets` longer than one means its first segment was verified too

    def __init__(self, key: int, packet: bytes, header_len: int, payload: int, seq: int,
                 v6: bool, open_: bool) -> None:
        self.key = key
        self.packets = [packet]
        self.header_len = header_len
        self.segment = payload
        self.payload = payload
        self.next_seq = (seq + payload) & 0xFFFFFFFF
        self.open = open_
        self.v6 = v6


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _mask(header_len: int, varying: tuple[tuple[int, int], ...]) -> int:
    """An int mask over a header of `header_len` bytes, zero on the `varying` byte ranges."""
    mask = bytearray(b"\xff" * header_len)
    for start, stop in varying:
        mask[start:stop] = bytes(stop - start)
    return int.from_bytes(mask, "big")


# Bytes that may differ between segments of one group. IPv4: total length, id, header
# checksum, TCP seq, flags (checked apart), TCP checksum. IPv6: payload length, seq, flags, csum.
_V4_VARYING = ((2, 6), (10, 12), (24, 28), (33, 34), (36, 38))
_V6_VARYING = ((4, 6), (44, 48), (53, 54), (56, 58))
_V4_MASKS = {20 + doff: _mask(20 + doff, _V4_VARYING) for doff in range(20, 64, 4)}
_V6_MASKS = {40 + doff: _mask(40 + doff, _V6_VARYING) for doff in range(20, 64, 4)}

def coalesce(packets: list[bytes], valid: ChecksumsValid) -> list[Write]:
    """Group `packets` into writev iovec lists (vnet header first), keeping flow order;
    `valid` checks a segment's checksums before it joins a group.

    Per packet: the header is read as one big int; masking out the fields that may differ
    and comparing with the group's first header checks every "same" rule at once.
    """
    out: list = []  # _Group or a single packet
    groups: dict[bytes, _Group] = {}
    from_bytes = int.from_bytes
    v4_masks, v6_masks = _V4_MASKS, _V6_MASKS
    for packet in packets:
        size = len(packet)
        first = packet[0] if size else 0
        if first == 0x45 and size > 40 and packet[9] == 6 and packet[6] & 0x3F == 0 \
                and packet[7] == 0:
            header_len = 20 + ((packet[32] >> 4) << 2)
            mask = v4_masks.get(header_len)
            flags = packet[33]
            flow = packet[12:24]
            v6 = False
        elif first >> 4 == 6 and size > 60 and packet[6] == 6:
            header_len = 40 + ((packet[52] >> 4) << 2)
            mask = v6_masks.get(header_len)
            flags = packet[53]
            flow = packet[8:44]
            v6 = True
        else:
            groups.clear()
            out.append(packet)
            continue
        payload = size - header_len
        if mask is None or payload <= 0 or flags & ~_TCP_PSH != _TCP_ACK:
            groups.clear()
            out.append(packet)
            continue
        header = from_bytes(packet[:header_len], "big")
        seq = (header >> ((header_len - (48 if v6 else 28)) << 3)) & 0xFFFFFFFF
        fixed = header & mask
        push = flags & _TCP_PSH
        group = groups.get(flow)
        l4_start = 40 if v6 else 20
        if (
            group is not None
            and group.open
            and seq == group.next_seq
            and fixed == group.key
            and payload <= group.segment
            and header_len + group.payload + payload <= MAX_SUPER_PACKET
        ):
            if not valid(packet, l4_start, 6):
                groups.clear()
                out.append(packet)
                continue
            if len(group.packets) > 1 or valid(group.packets[0], l4_start, 6):
                group.packets.append(packet)
                group.payload += payload
                group.next_seq = (seq + payload) & 0xFFFFFFFF
                if payload < group.segment or push:
                    group.open = False
                continue
            # the group's first segment failed: it stays alone, this one starts a group
        group = _Group(fixed, packet, header_len, payload, seq, v6, not push)
        groups[flow] = group
        out.append(group)
    return [_write_for(item) for item in out]


def _write_for(item: _Group | bytes) -> Write:
    if item.__class__ is not _Group:
        return [_ZERO_VNET_HDR, item]
    group: _Group = item  # type: ignore[assignment]
    packets = group.packets
    if len(packets) == 1:
        return [_ZERO_VNET_HDR, packets[0]]
    header_len = group.header_len
    header = bytearray(packets[0][:header_len])
    last_flags = packets[-1][53 if group.v6 else 33]
    if group.v6:
        tcp_len = header_len - 40 + group.payload
        header[4:6] = tcp_len.to_bytes(2, "big")
        header[53] |= last_flags & _TCP_PSH
        pseudo = sum(struct.unpack_from("!16H", header, 8)) + 6 + tcp_len
        csum_start = 40
        gso_type = VNET_HDR_GSO_TCPV6
    else:
        total = header_len + group.payload
        header[2:4] = total.to_bytes(2, "big")
        header[10:12] = b"\0\0"
        header[10:12] = (~_fold(sum(_ipv4_words.unpack_from(header))) & 0xFFFF).to_bytes(2, "big")
        header[33] |= last_flags & _TCP_PSH
        tcp_len = total - 20
        pseudo = sum(struct.unpack_from("!4H", header, 12)) + 6 + tcp_len
        csum_start = 20
        gso_type = VNET_HDR_GSO_TCPV4
    header[csum_start + 16 : csum_start + 18] = _fold(pseudo).to_bytes(2, "big")
    vnet = _vnet_hdr.pack(VNET_HDR_F_NEEDS_CSUM, gso_type, header_len, group.segment,
                          csum_start, 16)
    write: Write = [vnet, header]
    for packet in packets:
        write.append(memoryview(packet)[header_len:])
    return write
