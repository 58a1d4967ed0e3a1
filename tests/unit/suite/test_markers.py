"""The suite's groups select as the README says: `-m 'not e2e'` (the run without root) leaves
the kernel group out instead of booting its VM (it selected all of the group before, and a run
without root was killed while the VM booted), and `-m kernel` selects exactly that group."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _collect(marker: str) -> tuple[int, int]:
    """(selected, deselected) of `pytest --collect-only -m marker tests/kernel`."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", marker, "tests/kernel"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode in (0, 5), run.stdout + run.stderr  # 5: nothing selected
    summary = run.stdout.strip().splitlines()[-1]
    selected = re.search(r"(\d+)(?:/\d+)? tests? collected", summary)
    deselected = re.search(r"(\d+) deselected", summary)
    return (int(selected.group(1)) if selected else 0,
            int(deselected.group(1)) if deselected else 0)


def test_not_e2e_leaves_the_kernel_group_out() -> None:
    selected, deselected = _collect("not e2e")
    assert selected == 0
    assert deselected > 100  # the group's guest tests, each a host test


def test_kernel_selects_the_whole_group() -> None:
    selected, deselected = _collect("kernel")
    assert selected > 100
    assert deselected == 0
