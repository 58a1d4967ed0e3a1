#!/usr/bin/env python3
"""In-process micro-benchmark of TUN GRO (io/tun_gro.coalesce): the cost per TCP segment of
grouping a batch of decrypted packets into super-packets, before any syscall.

    python3 bench/tun_gro.py [--rounds R] [--batches N]

Batches of 128 packets like the daemon's: one bulk TCP flow (1380-byte segments, IPv4 and
IPv6), two interleaved flows, and small segments (100 bytes). Prints µs per packet, best of R
rounds; the number to watch is the bulk flow, which is what GRO exists for.
"""

from __future__ import annotations

import argparse
import socket
import struct
import time

from wgpy import fastpath
from wgpy.io.tun_gro import coalesce

BATCH = 128


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    return ~total & 0xFFFF


def tcp(payload: bytes, seq: int, v6: bool = False, sport: int = 40000) -> bytes:
    tcp_header = struct.pack("!HHIIBBHHH", sport, 5201, seq, 1, 5 << 4, 0x10, 65000, 0, 0)
    if v6:
        src = socket.inet_pton(socket.AF_INET6, "fd07::2")
        dst = socket.inet_pton(socket.AF_INET6, "fd07::1")
        pseudo = src + dst + struct.pack("!I3xB", 20 + len(payload), 6)
    else:
        src, dst = socket.inet_aton("10.7.0.2"), socket.inet_aton("10.7.0.1")
        pseudo = src + dst + struct.pack("!BBH", 0, 6, 20 + len(payload))
    csum = _checksum(pseudo + tcp_header + payload)
    tcp_header = tcp_header[:16] + struct.pack("!H", csum) + tcp_header[18:]
    if v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, 20 + len(payload), 6, 64, src, dst)
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0,
                         src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp_header + payload


def flow(size: int, v6: bool = False, sport: int = 40000) -> list[bytes]:
    return [tcp(bytes(size), 1000 + size * i, v6, sport) for i in range(BATCH)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    valid = fastpath.checksums_valid  # as the daemon's pure-Python write path hands it in
    two = [p for pair in zip(flow(1380)[:64], flow(1380, sport=40001)[:64]) for p in pair]
    cases = {
        "bulk IPv4, 1380 B": flow(1380),
        "bulk IPv6, 1380 B": flow(1380, v6=True),
        "two flows, 1380 B": two,
        "small, 100 B": flow(100),
    }
    for name, packets in cases.items():
        best = float("inf")
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.batches):
                coalesce(packets, valid)
            best = min(best, time.perf_counter() - start)
        writes = len(coalesce(packets, valid))
        per_packet = best / (args.batches * len(packets)) * 1e6
        print(f"{name:20s} {per_packet:6.3f} us/packet  ({len(packets)} packets -> {writes} writes)")


if __name__ == "__main__":
    main()
