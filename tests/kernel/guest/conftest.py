"""Runs inside the VM only: the kernel's wireguard module, the host's tools (read-only root).

Reports each test phase as a JSON line to $WGPY_KERNEL_RESULTS for the host side
(tests/kernel/test_vm.py). Outside the VM (no WGPY_KERNEL_GUEST) every test fails: these tests
load the wireguard module and must not touch the host.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

GUEST_DIR = Path(__file__).resolve().parent
from netns import Topology

IN_GUEST = os.environ.get("WGPY_KERNEL_GUEST") == "1"
# Under emulation (TCG) a Python start takes 10-30 s: the harness's wait for a daemon's UAPI
# socket (10 s, for hosts) gets this much in the guest, also in modules reused from tests/e2e.
EMULATED_START_TIMEOUT = 300.0
_start_userspace = Topology.start_userspace


def _start_userspace_emulated(self: Topology, ns: Any, ifname: str, argv: Any,
                              extra_env: dict[str, str] | None = None,
                              timeout: float = EMULATED_START_TIMEOUT) -> Any:
    return _start_userspace(self, ns, ifname, argv, extra_env=extra_env,
                            timeout=max(timeout, EMULATED_START_TIMEOUT))


Topology.start_userspace = _start_userspace_emulated  # type: ignore[method-assign]
COLLECT_ONLY = os.environ.get("WGPY_KERNEL_COLLECT_ONLY") == "1"
RESULTS = os.environ.get("WGPY_KERNEL_RESULTS")


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    """The test now running, for a VM that stops in the middle of one (kernelvm.why_stopped)."""
    if (path := os.environ.get("WGPY_KERNEL_CURRENT_TEST")) and not COLLECT_ONLY:
        Path(path).write_text(nodeid + "\n")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not RESULTS or COLLECT_ONLY:
        return
    if report.when != "call" and report.outcome == "passed":
        return
    record = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "wasxfail": getattr(report, "wasxfail", None),
        "duration": round(report.duration, 2),
        "longrepr": str(report.longrepr)[-6000:] if report.failed or report.skipped else "",
    }
    with open(RESULTS, "a") as handle:
        handle.write(json.dumps(record) + "\n")


@pytest.fixture(scope="session")
def wireguard_module() -> None:
    if not IN_GUEST:
        pytest.fail("tests/kernel/guest runs only inside the kernel VM: "
                    "run `python3 -m pytest -m kernel`", pytrace=False)
    for module in ("wireguard", "tun"):  # tun: for wgpy-daemon (not loaded at boot)
        result = subprocess.run(["modprobe", module], check=False, capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.fail(f"modprobe {module}: {result.stderr}", pytrace=False)
    tun = Path("/dev/net/tun")
    if not tun.exists():  # devtmpfs may not make the node
        tun.parent.mkdir(exist_ok=True)
        os.mknod(tun, 0o666 | stat.S_IFCHR, os.makedev(10, 200))


@pytest.fixture(scope="module")
def mtopo(wireguard_module: None, request: pytest.FixtureRequest) -> Iterator[Topology]:
    """One Topology for a whole module (Python starts are expensive under emulation)."""
    name = request.module.__name__.removeprefix("test_")[:10]
    with Topology(f"wk-{name}") as topology:
        yield topology


@pytest.fixture(scope="session")
def e2e_environment(wireguard_module: None) -> None:
    """The selftest adaptation's class topologies ask for this (tests/e2e/conftest.py on the
    host); in the guest the module is what they need."""
