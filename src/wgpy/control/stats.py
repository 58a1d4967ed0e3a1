"""wgpy's drop counters on the UAPI socket: the `wgpy_stats=1` request (wgpy only).

The standard `get=1` answer has no room for them (the real `wg` must keep parsing it), so the
daemon answers a separate operation on the same socket:

    wgpy_stats=1\\n\\n   ->   drop_<reason>=<count>\\n ... errno=0\\n\\n

`<reason>` is a `wgpy.errors.DropReason` member name in lower case (`drop_cookie_sent`); only
reasons seen at least once are listed. wireguard-go closes the connection on an operation it
does not know, which `parse_stats` callers see as "no answer": not supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATS_REQUEST = "wgpy_stats=1\n\n"
DROP_PREFIX = "drop_"


class StatsError(ValueError):
    """An answer to wgpy_stats that is not `key=value` lines ending in errno=N."""


def format_stats(drops: Mapping[Any, int]) -> str:
    """The whole answer for a Counter of DropReason -> count."""
    lines = []
    for reason, count in sorted(drops.items(), key=lambda item: _reason_name(item[0])):
        if count > 0:
            lines.append(f"{DROP_PREFIX}{_reason_name(reason)}={int(count)}\n")
    return "".join(lines) + "errno=0\n\n"


def _reason_name(reason: Any) -> str:
    return str(getattr(reason, "name", reason)).lower()


def parse_stats(text: str) -> tuple[dict[str, int], int]:
    """(drops by reason name without the prefix, errno) from an answer."""
    drops: dict[str, int] = {}
    status: int | None = None
    for line in text.split("\n"):
        if not line:
            break
        key, sep, value = line.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise StatsError(f"bad stats line {line[:64]!r}")
        if key == "errno":
            status = -int(value) if int(value) < 0 else int(value)
        elif key.startswith(DROP_PREFIX):
            drops[key[len(DROP_PREFIX):]] = int(value)
        # other keys: a newer daemon's additions, ignored
    if status is None:
        raise StatsError("stats answer without errno")
    return drops, status
