"""The suite's groups select as the README says: `-m 'not e2e'` (the run without root) leaves
the kernel group out instead of booting its VM (it selected all of the group before, and a run
without root was killed while the VM booted), and `-m kernel` selects exactly that group. The
markers are on test_vm.py's module, not added by a collection hook whose order against
pytest's own deselection is not the test's to rely on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _collect(marker: str | None) -> tuple[int, int]:
    """(selected, deselected) of `pytest --collect-only [-m marker] tests/kernel`."""
    select = ["-m", marker] if marker is not None else []
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *select, "tests/kernel"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode in (0, 5), run.stdout + run.stderr  # 5: nothing selected
    summary = run.stdout.strip().splitlines()[-1]
    selected = re.search(r"(\d+)(?:/\d+)? tests? collected", summary)
    deselected = re.search(r"(\d+) deselected", summary)
    return (int(selected.group(1)) if selected else 0,
            int(deselected.group(1)) if deselected else 0)


def _group_size() -> int:
    """How many host tests the group has (with root, one per guest test and one for the VM
    run; without root, where the guest is not collected, a placeholder and the VM run)."""
    group, deselected = _collect(None)
    assert group >= 2 and deselected == 0
    return group


def test_not_e2e_leaves_the_kernel_group_out() -> None:
    assert _collect("not e2e") == (0, _group_size())


def test_not_e2e_and_not_kernel_leaves_it_out() -> None:
    assert _collect("not e2e and not kernel") == (0, _group_size())


def test_kernel_selects_the_whole_group() -> None:
    assert _collect("kernel") == (_group_size(), 0)
