#!/usr/bin/env python3
"""In-process micro-benchmark of the per-packet arithmetic, C (wgpy._fastpath) against pure
Python (wgpy._purepath), with raw OpenSSL as the floor:

    python3 bench/fastpath.py [--rounds R] [--no-openssl]

- seal_run / open_run of a run of 64 packets of 1420 B and of 64 B (µs per packet);
- the floor: `openssl speed -aead -evp chacha20-poly1305 -bytes N` (EVP init + AAD + update +
  final per message, in C, for the same padded length plus the 16-byte tag);
- internet_checksum and checksums_valid per 1400 B segment (checksums_valid: what io/tun_gro.py
  verifies per segment; the pure one is the code tun_gro had before it used the fast path);
- tso_segment of a 64 KB TCPv4 super-packet into 1400 B segments (µs per super-packet);
- gro_coalesce of a batch of 128 segments of one TCP flow (1400 B payload) into the TUN writes
  (µs per segment; the pure one is io/tun_gro.coalesce with its iovec lists joined).

Best of R rounds; prints the load average, since the numbers mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Callable

from wgpy import _purepath

try:
    from wgpy import _fastpath
except ImportError as error:  # the table then has only the pure column
    _fastpath = None  # type: ignore[assignment]
    print(f"(wgpy._fastpath not built: {error})")

RUN = 64
KEY = bytes(range(32))


def best(fn: Callable[[], object], loops: int, rounds: int) -> float:
    """Seconds per call, best of `rounds` timings of `loops` calls."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - started) / loops)
    return min(times)


def openssl_floor_us(length: int) -> float | None:
    """µs per message of `length` bytes from `openssl speed -aead` (None without openssl)."""
    if not shutil.which("openssl"):
        return None
    out = subprocess.run(
        ["openssl", "speed", "-aead", "-evp", "chacha20-poly1305", "-bytes", str(length),
         "-seconds", "1"], capture_output=True, text=True, timeout=60, check=False).stdout
    match = re.search(r"ChaCha20-Poly1305\s+([\d.]+)k", out)
    if not match:
        return None
    return length / (float(match.group(1)) * 1000) * 1e6


def tcp4_segment(payload: bytes) -> bytes:
    tcp = bytearray(struct.pack("!HHIIBBHHH", 1000, 2000, 7, 9, 5 << 4, 0x10, 512, 0, 0) + payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                               bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))
    ip[10:12] = _purepath.internet_checksum(ip).to_bytes(2, "big")
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp[16:18] = _purepath.internet_checksum(pseudo + tcp).to_bytes(2, "big")
    return bytes(ip + tcp)


def row(name: str, pure: float, c: float | None, floor: float | None = None) -> None:
    c_text = f"{c * 1e6:8.2f}" if c is not None else "       -"
    ratio = f"{pure / c:6.1f}x" if c else "      -"
    floor_text = f"{floor:8.2f}   {c * 1e6 / floor:5.1f}x" if floor and c else ""
    print(f"{name:<36} {pure * 1e6:8.2f} {c_text}  {ratio}  {floor_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-openssl", action="store_true", help="skip the openssl floor")
    args = parser.parse_args()
    rounds = args.rounds
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    print(f"{'µs per packet (per call for TSO)':<36} {'python':>8} {'C':>8}  {'C gain':>6}  "
          f"{'openssl':>8}  C/floor")
    for size in (1420, 64):
        packets = [bytes(size)] * RUN
        padded = (size + 15) & ~15
        floor = None if args.no_openssl else openssl_floor_us(padded)
        results = {}
        for label, module in (("python", _purepath), ("c", _fastpath)):
            if module is None:
                results[label] = (None, None)
                continue
            context = module.AeadContext(KEY)
            sealed = module.seal_run(context, 1, 0, packets, 1420)
            seal = best(lambda m=module, c=context, p=packets: m.seal_run(c, 1, 0, p, 1420),
                        20, rounds) / RUN
            open_ = best(lambda m=module, c=context, s=sealed: m.open_run(c, s), 20, rounds) / RUN
            results[label] = (seal, open_)
        row(f"seal_run, {size} B packets", results["python"][0], results["c"][0], floor)
        row(f"open_run, {size} B packets", results["python"][1], results["c"][1], floor)

    segment = tcp4_segment(bytes(range(256)) * 5 + bytes(120))  # 1440 B: 1400 B TCP payload
    data = segment[20:]
    pure_sum = best(lambda: _purepath.internet_checksum(data), 2000, rounds)
    c_sum = best(lambda: _fastpath.internet_checksum(data), 2000, rounds) if _fastpath else None
    row("internet_checksum, 1420 B", pure_sum, c_sum)
    pure_valid = best(lambda: _purepath.checksums_valid(segment, 20, 6), 2000, rounds)
    c_valid = (best(lambda: _fastpath.checksums_valid(segment, 20, 6), 2000, rounds)
               if _fastpath else None)
    row("checksums_valid, 1440 B segment", pure_valid, c_valid)

    payload = bytes(range(256)) * 250  # 64,000 B
    tcp = struct.pack("!HHIIBBHHH", 1000, 2000, 7, 9, 5 << 4, 0x18, 512, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 1, 0x4000, 64, 6, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    super_packet = struct.pack("<BBHHHH", 1, 1, 40, 1400, 20, 16) + ip + tcp + payload
    pure_tso = best(lambda: _purepath.tso_segment(super_packet), 20, rounds)
    c_tso = best(lambda: _fastpath.tso_segment(super_packet), 200, rounds) if _fastpath else None
    row("tso_segment, 64 KB into 46 x 1400 B", pure_tso, c_tso)
    segments = []
    for index in range(128):
        one = bytearray(tcp4_segment(bytes(range(256)) * 5 + bytes(120)))
        one[24:28] = (7 + 1400 * index).to_bytes(4, "big")
        one[36:38] = b"\0\0"
        pseudo = bytes(one[12:20]) + struct.pack("!BBH", 0, 6, len(one) - 20)
        one[36:38] = _purepath.internet_checksum(pseudo + one[20:]).to_bytes(2, "big")
        segments.append(bytes(one))
    assert len(_purepath.gro_coalesce(segments)) == 3  # 46 + 46 + 36 segments
    pure_gro = best(lambda: _purepath.gro_coalesce(segments), 20, rounds) / len(segments)
    c_gro = (best(lambda: _fastpath.gro_coalesce(segments), 200, rounds) / len(segments)
             if _fastpath else None)
    row("gro_coalesce, 128 x 1440 B, per segment", pure_gro, c_gro)
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
