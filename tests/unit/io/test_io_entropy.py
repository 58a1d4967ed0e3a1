"""io/entropy.BufferedRandom: right lengths, never the same bytes twice, chunk refills."""

from __future__ import annotations

from wgpy.io import entropy
from wgpy.io.entropy import BufferedRandom


def test_lengths_and_no_reuse_across_refills(monkeypatch) -> None:
    reads: list[int] = []
    counter = iter(range(1, 10**6))

    def fake_urandom(n: int) -> bytes:  # distinguishable bytes: each chunk numbered
        reads.append(n)
        number = next(counter)
        return bytes((number + i) % 251 for i in range(n))

    monkeypatch.setattr(entropy.os, "urandom", fake_urandom)
    rng = BufferedRandom(chunk=64)
    pieces = [rng(n) for n in (2, 4, 32, 30, 2, 32)]
    assert [len(p) for p in pieces] == [2, 4, 32, 30, 2, 32]
    assert reads == [64, 64]  # 2+4+32 fit; 30 does not: refill; then 2, then 32 fits
    assert rng(100) and reads[-1] == 100  # larger than a chunk: read directly


def test_real_bytes_differ() -> None:
    rng = BufferedRandom()
    keys = {rng(32) for _ in range(1000)}
    assert len(keys) == 1000
