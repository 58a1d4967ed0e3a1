#!/usr/bin/env python3
"""In-process micro-benchmark of the core's transport path: Device.send_packets (route, pad,
encrypt, frame) and Device.receive_datagrams (index lookup, replay window, decrypt, source
check) for 1420-byte inner packets, between two devices after a real handshake.

    [WGPY_PURE=1] python3 bench/core_transport.py [--packets N] [--rounds R]

Prints packets/s and µs/packet for each direction (best of R rounds) and, for scale, the bare
ChaCha20-Poly1305 cost of the same payload with one cached AEAD object. The difference is the
core's Python overhead per packet, the part this benchmark exists to watch.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import struct
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy import fastpath
from wgpy.core import crypto
from wgpy.core.device import Device

A, B = ("192.0.2.1", 51820), ("192.0.2.2", 51821)
BATCH = 64  # packets per call, like the daemon's read batches


def ipv4(src: str, dst: str, size: int) -> bytes:
    payload = bytes(size - 20)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 17, 0,
                       ipaddress.IPv4Address(src).packed,
                       ipaddress.IPv4Address(dst).packed) + payload


def pair() -> tuple[Device, Device]:
    rng = random.Random(1).randbytes
    a, b = Device(rng=rng), Device(rng=rng)
    keys = [crypto.generate_keypair(rng(32)) for _ in range(2)]
    a.set_private_key(keys[0][0])
    b.set_private_key(keys[1][0])
    pb, pa = a.add_peer(keys[1][1]), b.add_peer(keys[0][1])
    a.allowed_ips.insert(ipaddress.ip_network("10.9.0.2/32"), pb)
    b.allowed_ips.insert(ipaddress.ip_network("10.9.0.1/32"), pa)
    a.set_endpoint(pb, B)
    a.send_packet(ipv4("10.9.0.1", "10.9.0.2", 100), 0.0)  # initiation, staged packet
    for _ in range(3):  # initiation -> response -> data
        for src, dst, src_ep in ((a, b, A), (b, a, B)):
            out = src.take_datagrams()
            for datagram, _ in out:
                dst.receive_datagram(datagram, src_ep, 0.0)
    assert b.take_packets(), "handshake failed"
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    fastpath.select_from(os.environ)  # as wgpy-daemon does
    print(f"per-packet fast path: {fastpath.DESCRIPTION}")
    a, b = pair()
    packet = ipv4("10.9.0.1", "10.9.0.2", 1420)
    n = args.packets
    best_send = best_receive = best_aead = float("inf")
    aead = ChaCha20Poly1305(bytes(32))
    for _ in range(args.rounds):
        packets = [packet] * n
        start = time.perf_counter()
        for index in range(0, n, BATCH):  # as the daemon's loop hands them over
            a.send_packets(packets[index:index + BATCH], 1.0)
        middle = time.perf_counter()
        out = a.take_datagrams()
        received = [(datagram, A) for datagram, _ in out]
        middle2 = time.perf_counter()
        for index in range(0, n, BATCH):
            b.receive_datagrams(received[index:index + BATCH], 1.0)
        end = time.perf_counter()
        assert len(b.take_packets()) == n, b.drops
        best_send = min(best_send, (middle - start) / n)
        best_receive = min(best_receive, (end - middle2) / n)
        nonce = crypto.nonce
        start = time.perf_counter()
        for counter in range(n):
            aead.encrypt(nonce(counter), packet, None)
        best_aead = min(best_aead, (time.perf_counter() - start) / n)
    for name, cost in (("send_packets", best_send), ("receive_datagrams", best_receive),
                       ("bare AEAD encrypt", best_aead)):
        print(f"{name:18} {1 / cost:10,.0f} packets/s  {cost * 1e6:6.2f} µs/packet  "
              f"({1420 * 8 / cost / 1e9:.2f} Gbit/s of 1420 B)")


if __name__ == "__main__":
    main()
