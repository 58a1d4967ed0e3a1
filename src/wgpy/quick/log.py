"""wg-quick's trace style: every action is echoed to stderr as `[#] command`, so an operator
reading a failed systemd unit's journal sees what ran last."""

from __future__ import annotations

import sys


def action(text: str) -> None:
    print(f"[#] {text}", file=sys.stderr, flush=True)


def note(text: str) -> None:
    print(f"[!] {text}", file=sys.stderr, flush=True)


def warning(text: str) -> None:
    print(f"Warning: {text}", file=sys.stderr, flush=True)
