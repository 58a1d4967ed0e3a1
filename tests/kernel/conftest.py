"""The kernel test group (marker `kernel`): one VM boot runs every test under guest/.

guest/ is never collected on the host (it needs the wireguard module): the host collects its
node ids (`pytest --collect-only`, which also warms the guest's pycache), boots the VM once
(session fixture `guest_run`), and reports each guest test as its own host test. A VM that does
not boot, a guest pytest that collects nothing or a guest test with no result fails.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vm

KERNEL_DIR = Path(__file__).resolve().parent
collect_ignore = ["guest"]

_shared: Path | None = None
_collected: list[str] | None = None
_collect_error: str | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if KERNEL_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.kernel)


def shared_dir() -> Path:
    """The directory shared read-write with the guest (not under /tmp: the guest mounts a
    tmpfs there)."""
    global _shared
    if _shared is None:
        base = Path("/var/tmp")
        _shared = Path(tempfile.mkdtemp(prefix="wgpy-kernel-", dir=base))
    return _shared


def guest_node_ids() -> tuple[list[str], str | None]:
    global _collected, _collect_error
    if _collected is None:
        _collected = []
        reason = vm.why_vm_cannot_run()
        if reason:
            _collect_error = reason
        else:
            try:
                _collected = vm.collect_guest_tests(shared_dir())
            except (RuntimeError, OSError) as error:
                _collect_error = str(error)
    return _collected, _collect_error


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "guest_test" in metafunc.fixturenames:
        ids, _ = guest_node_ids()
        metafunc.parametrize("guest_test", ids or ["<no guest tests collected>"], ids=str)


@pytest.fixture(scope="session")
def guest_run() -> Iterator[vm.GuestRun]:
    """Boot the VM once and run every guest test in it."""
    _, error = guest_node_ids()
    if error:
        pytest.fail(error, pytrace=False)
    shared = shared_dir()
    vm.warm_pycache(shared)
    run = vm.boot_and_run(shared)
    sys.stderr.write(
        f"\n[kernel] VM ({run.accelerator}) ran {len(run.results)} guest tests in "
        f"{run.seconds:.0f} s, guest pytest exit {run.status}; shared dir {shared}\n"
    )
    (shared / "host-summary.txt").write_text(
        f"accelerator={run.accelerator} seconds={run.seconds:.1f} status={run.status}\n"
    )
    yield run
    if run.status == 0 and not os.environ.get("WGPY_KERNEL_KEEP"):
        shutil.rmtree(shared, ignore_errors=True)  # kept after a failure, for its logs
