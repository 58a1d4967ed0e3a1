"""TAI64N timestamps (whitepaper 5.4.2; https://cr.yp.to/libtai/tai64.html).

12 bytes: 8 bytes big-endian seconds + 2**62 (plus the 10 s TAI offset, as wireguard-go uses),
4 bytes big-endian nanoseconds. Big-endian makes the byte strings compare in time order, which
is how the responder detects replayed initiations.
"""

from __future__ import annotations

import struct

_TAI64_BASE = (1 << 62) + 10
_pack = struct.Struct(">QI").pack
_unpack = struct.Struct(">QI").unpack

# Nanoseconds are rounded down to this granularity so a timestamp does not fingerprint the
# host clock (the kernel and wireguard-go whiten to ~16 ms).
WHITENING_NS = 0x1000000


def tai64n(wall_seconds: float) -> bytes:
    seconds = int(wall_seconds)
    nanos = int((wall_seconds - seconds) * 1e9)
    nanos -= nanos % WHITENING_NS
    return _pack(_TAI64_BASE + seconds, nanos)


def parse_tai64n(stamp: bytes) -> float:
    seconds, nanos = _unpack(stamp)
    return (seconds - _TAI64_BASE) + nanos / 1e9
