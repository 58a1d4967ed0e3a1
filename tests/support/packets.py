"""IPv4/IPv6 TCP and UDP packets with valid checksums, for the TUN GRO/TSO and fast-path tests."""

from __future__ import annotations

import socket
import struct

ACK, PSH, SYN, FIN = 0x10, 0x08, 0x02, 0x01


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp4(payload: bytes, seq: int, flags: int = ACK, src: str = "10.7.0.2", dst: str = "10.7.0.1",
         sport: int = 1234, dport: int = 5000, ack: int = 1, options: bytes = b"") -> bytes:
    src_b, dst_b = socket.inet_aton(src), socket.inet_aton(dst)
    doff = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65000, 0, 0)
    tcp += options
    pseudo = src_b + dst_b + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    csum = checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64, 6,
                     0, src_b, dst_b)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp + payload


def tcp6(payload: bytes, seq: int, flags: int = ACK) -> bytes:
    src_b = socket.inet_pton(socket.AF_INET6, "fd07::2")
    dst_b = socket.inet_pton(socket.AF_INET6, "fd07::1")
    tcp = struct.pack("!HHIIBBHHH", 1234, 5000, seq, 1, 5 << 4, flags, 65000, 0, 0)
    pseudo = src_b + dst_b + struct.pack("!I3xB", len(tcp) + len(payload), 6)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, 64, src_b, dst_b)
    return ip + tcp + payload


def udp4(payload: bytes, sport: int = 1234, dst: str = "10.7.0.1") -> bytes:
    src_b, dst_b = socket.inet_aton("10.7.0.2"), socket.inet_aton(dst)
    udp = struct.pack("!HHHH", sport, 6000, 8 + len(payload), 0)
    pseudo = src_b + dst_b + struct.pack("!BBH", 0, 17, len(udp) + len(payload))
    udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp + payload)) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 7, 0x4000, 64, 17, 0,
                     src_b, dst_b)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + udp + payload


def super_packet_of(payload: bytes, gso_size: int, v6: bool = False) -> bytes:
    """A vnet header and a TCP super-packet, as the kernel hands a TUN with TSO on."""
    tcp = struct.pack("!HHIIBBHHH", 443, 50000, 1000, 77, 5 << 4, 0x18, 1024, 0, 0)
    if v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, 0, 6, 64, b"\x20" * 16, b"\x21" * 16)
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 1, 0x4000, 64, 6, 0,
                         bytes([10, 1, 2, 3]), bytes([10, 3, 2, 1]))
    vnet = struct.pack("<BBHHHH", 1, 4 if v6 else 1, len(ip) + 20, gso_size, len(ip), 16)
    return vnet + ip + tcp + payload
