#!/usr/bin/env python3
"""In-process micro-benchmark: ChaCha20-Poly1305 encrypt+decrypt of 1420-byte packets.

    python3 bench/core_crypto.py [--seconds S] [--size BYTES] [--rounds N]

One "packet" is one encryption into a transport-data message (16-byte header, ciphertext, tag)
plus its decryption, with WireGuard's nonce (4 zero bytes, 64-bit little-endian counter) and an
incrementing counter. Variants, from the naive to the hot-path shape the daemon should use:

  new-object      a new ChaCha20Poly1305(key) per call (what a per-call helper costs)
  cached          one cached AEAD object per key; encrypt()/decrypt() return new bytes
  cached-into     one cached AEAD object; encrypt_into()/decrypt_into() write into preallocated
                  buffers (the ciphertext straight after the message header)

Add a variant by appending to VARIANTS: a factory taking (key, plaintext) and returning a
`step(counter)` that does one encrypt+decrypt and returns the decrypted length. Prints packets/s
(median of rounds) and the ratio to `cached`, as Markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

HEADER_SIZE = 16  # type (4) + receiver index (4) + counter (8)
TAG_SIZE = 16
NONCE = struct.Struct("<4xQ")  # 32 zero bits, then the 64-bit little-endian counter

Step = Callable[[int], int]


def new_object_variant(key: bytes, plaintext: bytes) -> Step:
    nonce_pack = NONCE.pack

    def step(counter: int) -> int:
        nonce = nonce_pack(counter)
        ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, None)
        return len(ChaCha20Poly1305(key).decrypt(nonce, ciphertext, None))

    return step


def cached_variant(key: bytes, plaintext: bytes) -> Step:
    aead = ChaCha20Poly1305(key)
    encrypt, decrypt, nonce_pack = aead.encrypt, aead.decrypt, NONCE.pack

    def step(counter: int) -> int:
        nonce = nonce_pack(counter)
        return len(decrypt(nonce, encrypt(nonce, plaintext, None), None))

    return step


def cached_into_variant(key: bytes, plaintext: bytes) -> Step:
    aead = ChaCha20Poly1305(key)
    encrypt_into, decrypt_into = aead.encrypt_into, aead.decrypt_into
    message = bytearray(HEADER_SIZE + len(plaintext) + TAG_SIZE)
    sealed = memoryview(message)[HEADER_SIZE:]
    opened = bytearray(len(plaintext))
    nonce = bytearray(NONCE.size)
    nonce_pack_into = NONCE.pack_into

    def step(counter: int) -> int:
        nonce_pack_into(nonce, 0, counter)
        encrypt_into(nonce, plaintext, None, sealed)
        return decrypt_into(nonce, sealed, None, opened)

    return step


VARIANTS: dict[str, Callable[[bytes, bytes], Step]] = {
    "new-object": new_object_variant,
    "cached": cached_variant,
    "cached-into": cached_into_variant,
}
BASELINE = "cached"


def packets_per_second(step: Step, seconds: float, size: int) -> float:
    if step(0) != size:  # also warms up
        raise AssertionError("decryption did not return the packet")
    batch = 2000
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for counter in range(done + 1, done + batch + 1):
            step(counter)
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=1420, help="plaintext bytes per packet")
    args = parser.parse_args()
    key, plaintext = os.urandom(32), os.urandom(args.size)
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):  # interleave variants so drift hits all alike
        for name, factory in VARIANTS.items():
            results[name].append(packets_per_second(factory(key, plaintext), args.seconds,
                                                    args.size))
    base = statistics.median(results[BASELINE])
    print(f"ChaCha20-Poly1305 encrypt+decrypt of {args.size}-byte packets, one core, "
          f"median of {args.rounds} × {args.seconds:g} s\n")
    print(f"| variant | packets/s | µs per packet | ÷ {BASELINE} |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:,.0f} | {1e6 / rate:.2f} | {rate / base:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
