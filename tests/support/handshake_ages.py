"""`wg show`'s "latest handshake: ... ago" lines move on while the tools run: masked for a
byte comparison of two outputs, with the ages kept (in seconds) to compare on their own."""

from __future__ import annotations

import re

ANSI = re.compile(rb"\x1b\[[0-9;]*m")
UNIT_SECONDS = {b"year": 365 * 86400, b"day": 86400, b"hour": 3600, b"minute": 60,
                b"second": 1}
AGE_PART = re.compile(rb"(\d+) (year|day|hour|minute|second)s?")


def mask_handshake_ages(output: bytes) -> tuple[bytes, list[int]]:
    """output with the value of each "latest handshake: ... ago" (or "Now") line replaced by
    "<age>", and those ages in seconds. The whole value goes: one second later "Now" is
    "1 second ago", "1 second" is "2 seconds", and "59 seconds" is "1 minute"."""
    lines, ages = [], []
    for line in output.split(b"\n"):
        label, _, value = line.partition(b": ")
        plain = ANSI.sub(b"", value)
        if b"latest handshake" in label and (plain.endswith(b" ago") or plain == b"Now"):
            ages.append(sum(int(n) * UNIT_SECONDS[unit] for n, unit in AGE_PART.findall(plain)))
            line = label + b": <age>"
        lines.append(line)
    return b"\n".join(lines), ages
