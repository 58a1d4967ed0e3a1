"""The per-packet arithmetic in Python: the reference for the C extension wgpy._fastpath.

Each function is exactly what today's code does inline (Device._seal, the receive loop's
decrypt, io/tun_gro.py's checksum verification), written as a function on buffers so the
same inputs can be fed to both implementations (tests/unit/core/test_fastpath.py). No protocol
state: keypair choice, counters, the replay window and drops stay with the caller.
wgpy/fastpath.py picks which implementation runs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy.constants import REJECT_AFTER_MESSAGES
from wgpy.core.crypto import nonce as _nonce
from wgpy.core.messages import TRANSPORT_HEADER
from wgpy.io.tun_gro import coalesce

Buffer = bytes | bytearray | memoryview

_header = TRANSPORT_HEADER.pack  # type 4 (+3 reserved zero bytes), receiver, counter
_counter = struct.Struct("<Q").unpack_from
_ZERO_PADDING = bytes(16)
_U32 = 2**32
_U64 = 2**64


def _check_int(value: int, limit: int, what: str) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if not 0 <= value < limit:
        raise ValueError(f"{what} out of range")


def _contiguous(data: Buffer) -> bytes | memoryview:
    """The bytes of a buffer; a non-contiguous one is refused (the C side takes PyBUF_SIMPLE)."""
    if data.__class__ is bytes:
        return data  # type: ignore[return-value]
    view = memoryview(data)
    if not view.c_contiguous:
        raise BufferError("a contiguous buffer is required")
    return view.cast("B")


class AeadContext:
    """ChaCha20-Poly1305 under one 32-byte key, for seal_run/open_run."""

    __slots__ = ("_aead",)

    def __init__(self, key: Buffer) -> None:
        if len(_contiguous(key)) != 32:
            raise ValueError("ChaCha20Poly1305 key must be 32 bytes.")
        self._aead: ChaCha20Poly1305 | None = ChaCha20Poly1305(bytes(key))

    def zeroize(self) -> None:
        """Forget the key (the library's object holds the only copy). Later use raises."""
        self._aead = None

    def _get(self) -> ChaCha20Poly1305:
        if self._aead is None:
            raise ValueError("the AeadContext was zeroized")
        return self._aead


def seal_run(context: AeadContext, receiver_index: int, counter: int,
             packets: Sequence[Buffer], mtu: int, ad: Buffer = b"") -> list[bytes]:
    """The transport messages (header, then the sealed padded packet) for `packets`, with
    counters `counter`, `counter + 1`, ...; stops before REJECT_AFTER_MESSAGES, so fewer
    messages than packets come back when the counters run out.

    Each packet is padded with zeros to a multiple of 16, never beyond the MTU (kernel:
    calculate_skb_padding; an MTU of 0 caps nothing)."""
    if not isinstance(context, AeadContext):
        raise TypeError("context must be an AeadContext")
    encrypt = context._get().encrypt
    _check_int(receiver_index, _U32, "receiver_index")
    _check_int(counter, _U64, "counter")
    if not isinstance(mtu, int):
        raise TypeError("mtu must be an int")
    if mtu < 0:
        raise ValueError("mtu out of range")
    ad_bytes = bytes(_contiguous(ad)) or None
    if not isinstance(packets, (list, tuple)):
        packets = list(packets)
    available = REJECT_AFTER_MESSAGES - counter
    if len(packets) > available:
        packets = packets[: max(available, 0)]
    out = []
    append = out.append
    header = _header
    nonce = _nonce
    for packet in packets:
        if packet.__class__ is not bytes:
            packet = _contiguous(packet)
        length = len(packet)
        last_unit = length % mtu if mtu else length
        padded = (last_unit + 15) & ~15
        if mtu and padded > mtu:
            padded = mtu
        if padded != last_unit:
            packet = bytes(packet) + _ZERO_PADDING[: padded - last_unit]
        append(header(4, receiver_index, counter) + encrypt(nonce(counter), packet, ad_bytes))
        counter += 1
    return out


def open_run(context: AeadContext, datagrams: Sequence[Buffer],
             ad: Buffer = b"") -> list[bytes | None]:
    """Per transport message (header included; the counter is its bytes 8..16): the
    plaintext, or None when it is shorter than header + tag or fails authentication.

    The caller checks the replay window before and marks it after, for the ones that
    authenticated -- as the receive loop does today around each decrypt."""
    if not isinstance(context, AeadContext):
        raise TypeError("context must be an AeadContext")
    decrypt = context._get().decrypt
    ad_bytes = bytes(_contiguous(ad)) or None
    if not isinstance(datagrams, (list, tuple)):
        datagrams = list(datagrams)
    out: list[bytes | None] = []
    append = out.append
    nonce = _nonce
    counter_of = _counter
    for data in datagrams:
        if data.__class__ is not bytes:
            data = _contiguous(data)
        if len(data) < 32:
            append(None)
            continue
        try:
            append(decrypt(nonce(counter_of(data, 8)[0]), data[16:], ad_bytes))
        except InvalidTag:
            append(None)
    return out


# --- the internet checksum (RFC 1071) ----------------------------------------------------

def _mod_ffff(whole: int) -> int:
    """`whole % 0xFFFF`, folding halves first: shifts and masks on multiples of 16 bits keep
    the value mod 0xFFFF and are about twice as fast as dividing a segment-sized integer
    (io/tun_gro.py, bench/tun_gro.py)."""
    bits = whole.bit_length()
    if bits > 8192:
        whole = (whole >> 8192) + (whole & _LOW_8192)
    if bits > 4096:
        whole = (whole >> 4096) + (whole & _LOW_4096)
    if bits > 2048:
        whole = (whole >> 2048) + (whole & _LOW_2048)
    return whole % 0xFFFF


_LOW_8192 = (1 << 8192) - 1
_LOW_4096 = (1 << 4096) - 1
_LOW_2048 = (1 << 2048) - 1


def _sum16(data: Buffer) -> int:
    """The one's complement sum of `data` as big-endian 16-bit words (an odd last byte padded
    with zero), folded to 16 bits: 0 only for all-zero data, else 1..0xFFFF.

    2**16 == 1 (mod 0xFFFF), so the sum of the words is the data read as one integer, mod
    0xFFFF; a nonzero multiple of 0xFFFF folds to 0xFFFF."""
    whole = int.from_bytes(data, "big")
    if len(data) & 1:
        whole <<= 8
    total = _mod_ffff(whole)
    return 0xFFFF if total == 0 and whole else total


def internet_checksum(data: Buffer) -> int:
    """The RFC 1071 checksum of `data`: the complement of its one's complement sum."""
    return ~_sum16(_contiguous(data)) & 0xFFFF


def checksums_valid(packet: Buffer, l4_start: int, protocol: int) -> bool:
    """io/tun_gro.py's verification of a segment before it is merged, as it is written there
    (one read of the whole packet as an integer): the IPv4 header checksum (l4_start 20) and
    the TCP/UDP checksum over the pseudo-header hold; a UDP-over-IPv4 checksum of 0 means none
    was computed. Sums are compared mod 0xFFFF (a sum of 0 and of 0xFFFF both pass). Added
    here: the arguments are checked, and a packet too short for an L4 header (the caller never
    passes one) is not valid."""
    packet = _contiguous(packet)
    if l4_start not in (20, 40) or not 0 <= protocol <= 255:
        raise ValueError("l4_start must be 20 or 40, protocol a byte")
    length = len(packet)
    if length < l4_start + 8:
        return False
    l4_length = length - l4_start
    whole = int.from_bytes(packet, "big")
    if length & 1:
        whole <<= 8  # an odd length is padded with a zero byte
        length += 1
    header = whole >> ((length - l4_start) << 3)
    if l4_start == 20:
        if header % 0xFFFF:
            return False  # the IPv4 header checksum
        if protocol == 17 and not (whole >> ((length - 28) << 3)) & 0xFFFF:
            return True
        # the header sums to 0: what remains is the L4 sum; add the pseudo-header's addresses
        pseudo = header & 0xFFFFFFFFFFFFFFFF
    else:
        pseudo = -(header >> 256)  # IPv6: all of the header but its first 8 bytes
    return (_mod_ffff(whole) + pseudo + protocol + l4_length) % 0xFFFF == 0


# --- TSO: a virtio-net-hdr super-packet into MSS segments --------------------------------

VNET_HDR_LEN = 10
VNET_HDR_F_NEEDS_CSUM = 1
VNET_HDR_GSO_NONE = 0
VNET_HDR_GSO_TCPV4 = 1
VNET_HDR_GSO_TCPV6 = 4
VNET_HDR_GSO_ECN = 0x80
_TCP_FIN = 0x01
_TCP_PSH = 0x08
_TCP_CWR = 0x80
_vnet_hdr = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, offset


def tso_segment(data: Buffer) -> list[bytes]:
    """The IP packets in `data`: a virtio_net_hdr and the packet after it, as a TUN with
    IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) delivers them.

    - No GSO: the packet; with NEEDS_CSUM its checksum is completed (the field holds the
      pseudo-header sum; the sum from csum_start on goes in, complemented; a result of 0 as
      0xFFFF).
    - TCPv4/TCPv6 GSO: cut after the TCP header into gso_size payloads (the last one may be
      shorter). Each segment gets its length, the TCP sequence number advanced by the payload
      before it, FIN and PSH only on the last and CWR only on the first (as the kernel's
      tcp_gso_segment), for IPv4 the id plus the segment's index and the header checksum, and
      the full TCP checksum. The vnet header's hdr_len is not trusted: the TCP data offset
      says where the payload starts. The ECN flag (VIRTIO_NET_HDR_GSO_ECN) may be set.
    Anything else (UDP GSO, extension headers on IPv6, lengths that do not fit) is a ValueError:
    the caller counts the read as a bad packet."""
    data = _contiguous(data)
    if len(data) < VNET_HDR_LEN:
        raise ValueError("bad super-packet: shorter than the vnet header")
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _vnet_hdr.unpack_from(data)
    packet = data[VNET_HDR_LEN:]
    length = len(packet)
    if gso_type == VNET_HDR_GSO_NONE:
        one = bytearray(packet)
        if flags & VNET_HDR_F_NEEDS_CSUM:
            field = csum_start + csum_offset
            if field + 2 > length:
                raise ValueError("bad super-packet: checksum field beyond the packet")
            # 0 goes out as 0xFFFF, as the kernel's skb_checksum_help (for UDP 0 would mean
            # "no checksum", which IPv6 forbids)
            check = internet_checksum(one[csum_start:]) or 0xFFFF
            one[field : field + 2] = check.to_bytes(2, "big")
        return [bytes(one)]
    # the ECN flag (the super-packet carries CWR) changes nothing: CWR stays on the first
    # segment only, as for any super-packet (the kernel's tcp_gso_segment)
    if gso_type & ~VNET_HDR_GSO_ECN == VNET_HDR_GSO_TCPV4:
        v6 = False
    elif gso_type & ~VNET_HDR_GSO_ECN == VNET_HDR_GSO_TCPV6:
        v6 = True
    else:
        raise ValueError("bad super-packet: not TCPv4/TCPv6 GSO")
    if not flags & VNET_HDR_F_NEEDS_CSUM or csum_offset != 16:
        raise ValueError("bad super-packet: GSO without a TCP checksum offset")
    if gso_size == 0:
        raise ValueError("bad super-packet: segment size 0")
    if v6:
        if length < 40 or packet[0] >> 4 != 6 or packet[6] != 6 or csum_start != 40:
            raise ValueError("bad super-packet: not IPv6 + TCP")
    elif (length < 20 or packet[0] >> 4 != 4 or packet[9] != 6
          or csum_start != (packet[0] & 15) * 4 or csum_start < 20):
        raise ValueError("bad super-packet: not IPv4 + TCP")
    if length < csum_start + 20:
        raise ValueError("bad super-packet: TCP header cut short")
    header_len = csum_start + (packet[csum_start + 12] >> 4) * 4
    if header_len < csum_start + 20 or header_len > length:
        raise ValueError("bad super-packet: bad TCP data offset")
    payload = length - header_len
    if header_len + min(payload, gso_size) > 65535:
        raise ValueError("bad super-packet: segment longer than an IP packet")
    seq = int.from_bytes(packet[csum_start + 4 : csum_start + 8], "big")
    ip_id = int.from_bytes(packet[4:6], "big")
    offsets = range(0, payload, gso_size) if payload else range(1)
    last_index = len(offsets) - 1
    segments = []
    for index, offset in enumerate(offsets):
        body = packet[header_len + offset : header_len + offset + gso_size]
        total = header_len + len(body)
        header = bytearray(packet[:header_len])
        if v6:
            header[4:6] = (total - 40).to_bytes(2, "big")
            pseudo = _sum16(header[8:40])
        else:
            header[2:4] = total.to_bytes(2, "big")
            header[4:6] = ((ip_id + index) & 0xFFFF).to_bytes(2, "big")
            header[10:12] = b"\0\0"
            header[10:12] = internet_checksum(header[:csum_start]).to_bytes(2, "big")
            pseudo = _sum16(header[12:20])
        header[csum_start + 4 : csum_start + 8] = ((seq + offset) & 0xFFFFFFFF).to_bytes(4, "big")
        if index != last_index:
            header[csum_start + 13] &= ~(_TCP_FIN | _TCP_PSH) & 0xFF
        if index:
            header[csum_start + 13] &= ~_TCP_CWR & 0xFF
        header[csum_start + 16 : csum_start + 18] = b"\0\0"
        segment = header + body
        tcp_length = total - csum_start
        # the TCP header is a multiple of 4 bytes long: its sum and the payload's just add
        total_sum = pseudo + 6 + tcp_length + _sum16(segment[csum_start:])
        segment[csum_start + 16 : csum_start + 18] = (~_fold(total_sum) & 0xFFFF).to_bytes(2, "big")
        segments.append(bytes(segment))
    return segments


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


# --- GRO for the TUN: TCP segments of a flow into one super-packet ---------------------------

def gro_coalesce(packets: Sequence[Buffer]) -> list[bytes]:
    """The writes into a TUN with IFF_VNET_HDR for `packets`, in order: each a virtio_net_hdr
    and the packet or coalesced TCP super-packet after it. The rules are io/tun_gro.py's
    `coalesce` (TCP only), with this module's checksums; this is each of its iovec lists
    joined into one buffer."""
    if not isinstance(packets, (list, tuple)):
        packets = list(packets)
    return [b"".join(write) for write in coalesce(
        [p if p.__class__ is bytes else bytes(_contiguous(p)) for p in packets],
        checksums_valid)]
