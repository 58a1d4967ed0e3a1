"""Logging at a bounded rate, for faults that can repeat at packet rate.

A TUN that keeps failing with ENOBUFS, or a bug that raises on every datagram, must show up
in the daemon's log without writing a line (and a traceback) per packet. `RateLimitedLog`
lets `burst` records per key through in each `interval`, counts the rest, and says how many
it held back on the next record it lets through for that key:

    faults = RateLimitedLog(log, clock)
    faults.log(logging.ERROR, ("tun write", errno.ENOBUFS), "TUN write failed: %s", "...")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

INTERVAL = 10.0  # seconds
BURST = 3  # records per key and interval
MAX_KEYS = 256  # a bound on the table even if keys were to vary without end


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, clock: Callable[[], float],
                 interval: float = INTERVAL, burst: int = BURST) -> None:
        self.logger = logger
        self.clock = clock
        self.interval = interval
        self.burst = burst
        # key -> [window start, records let through in the window, records held back]
        self._keys: dict[Hashable, list[Any]] = {}

    def log(self, level: int, key: Hashable, message: str, *args: object,
            exc_info: BaseException | bool | None = None) -> bool:
        """Log `message % args` unless `key` used up its records for this interval; True if
        it was logged."""
        now = self.clock()
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= MAX_KEYS:
                self._keys.clear()
            state = self._keys[key] = [now, 0, 0]
        elif now - state[0] >= self.interval:
            state[0], state[1] = now, 0
        if state[1] >= self.burst:
            state[2] += 1
            return False
        state[1] += 1
        if state[2]:
            message += " (%d more like this not logged)"
            args = (*args, state[2])
            state[2] = 0
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True
