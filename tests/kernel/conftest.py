"""The kernel test group (markers `kernel` and `e2e`, set in test_vm.py): one VM boot runs
every test under guest/.

guest/ is never collected on the host (it needs the wireguard module): the host collects its
node ids (`pytest --collect-only`, which also warms the guest's pycache), boots the VM once
(session fixture `guest_run`), and reports each guest test as its own host test. A VM that does
not boot, a guest pytest that collects nothing or a guest test with no result fails.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kernelvm as vm

collect_ignore = ["guest"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "guest_test" in metafunc.fixturenames:
        ids, _ = vm.guest_node_ids()
        metafunc.parametrize("guest_test", ids or ["<no guest tests collected>"], ids=str)


@pytest.fixture(scope="session")
def guest_run() -> vm.GuestRun:
    """Boot the VM once and run every guest test in it."""
    _, error = vm.guest_node_ids()
    if error:
        pytest.fail(error, pytrace=False)
    shared = vm.shared_dir()
    vm.warm_pycache(shared)
    run = vm.boot_and_run(shared)
    sys.stderr.write(
        f"\n[kernel] VM ({run.accelerator}) ran {len(run.results)} guest tests in "
        f"{run.seconds:.0f} s, guest pytest exit {run.status}; shared dir {shared}\n"
    )
    (shared / "host-summary.txt").write_text(
        f"accelerator={run.accelerator} seconds={run.seconds:.1f} status={run.status}\n"
    )
    if run.status != 0 or os.environ.get("WGPY_KERNEL_KEEP"):
        vm.keep_shared = True  # its console.log and results, for whoever looks into it
    return run


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The shared directory goes (also when the group was only collected), unless kept."""
    if (shared := vm.created_shared_dir()) is not None and not vm.keep_shared:
        shutil.rmtree(shared, ignore_errors=True)
