"""Randomness for the core: the kernel's CSPRNG, fetched in chunks.

The core asks for a few random bytes in its hot path (2 bytes of timer jitter each time data is
sent after something was received — once per TCP ACK on a busy sender). One getrandom() system
call per such request costs about a microsecond; reading 4 KiB at a time and handing out slices
costs a slice. The bytes are the kernel's either way and each byte is handed out once.
"""

from __future__ import annotations

import os

CHUNK = 4096


class BufferedRandom:
    """`rng(n) -> n random bytes` (the core's Rng) backed by os.urandom in CHUNK-byte reads."""

    __slots__ = ("_buffer", "_chunk", "_position")

    def __init__(self, chunk: int = CHUNK) -> None:
        self._chunk = chunk
        self._buffer = b""
        self._position = 0

    def __call__(self, n: int) -> bytes:
        start = self._position
        end = start + n
        if end > len(self._buffer):
            if n > self._chunk:
                return os.urandom(n)
            self._buffer = os.urandom(self._chunk)
            start, end = 0, n
        self._position = end
        return self._buffer[start:end]
