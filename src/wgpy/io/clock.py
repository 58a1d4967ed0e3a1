"""The clocks the IO layer hands to the core.

The core works in one time domain, `now` in monotonic seconds (`time.monotonic()`): it never
jumps when the wall clock is set, so timers stay right. Only the UAPI reports wall-clock time
(`last_handshake_time_sec/nsec`, seconds since the Unix epoch), so a monotonic instant is
converted when a `get=1` is answered.
"""

from __future__ import annotations

import time

_NS = 1_000_000_000


def wall_clock_of(
    monotonic_instant: float | None,
    now_monotonic_ns: int | None = None,
    now_wall_ns: int | None = None,
) -> tuple[int, int]:
    """(seconds, nanoseconds) since the epoch of a past monotonic instant; (0, 0) for None.

    The two "now" readings can be given for tests; by default they are read here, one right
    after the other, so the conversion error is the few hundred ns between them.
    """
    if monotonic_instant is None:
        return 0, 0
    if now_monotonic_ns is None:
        now_monotonic_ns = time.monotonic_ns()
    if now_wall_ns is None:
        now_wall_ns = time.time_ns()
    age_ns = now_monotonic_ns - round(monotonic_instant * _NS)
    wall_ns = max(0, now_wall_ns - age_ns)
    return wall_ns // _NS, wall_ns % _NS
