"""Importing a module under tests/ does nothing: `pytest --doctest-modules` imports every one,
and tests/kernel/devrun.py used to collect the guest tests and boot the VM when imported (a run
without root was killed while that VM booted, "no tests ran")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernel"

# kernelvm's entry points refuse, and the import of devrun must not reach them
PROBE = f"""
import sys
sys.path.insert(0, {str(KERNEL_DIR)!r})
import kernelvm

def refuse(*args, **kwargs):
    raise SystemExit("devrun reached kernelvm on import")

kernelvm.collect_guest_tests = kernelvm.warm_pycache = kernelvm.boot_and_run = refuse
import devrun
"""


def test_devrun_does_nothing_on_import() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_devrun_without_what_the_vm_needs_says_why_in_one_line() -> None:
    """Without virtme-ng (or root, or a kernel) devrun names what is missing and boots nothing;
    it used to collect the guest tests, then end in a traceback from starting vng."""
    run = subprocess.run([sys.executable, str(KERNEL_DIR / "devrun.py"), "-k", "nothing"],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "WGPY_VNG_VENV": "/nonexistent/wgpy-vng"})
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("devrun: "), run.stderr
    assert ("virtme-ng is missing" in run.stderr) == (os.geteuid() == 0), run.stderr
