"""Fixtures for the end-to-end tests (root, network namespaces, real wg and wireguard-go).

Every test under tests/e2e is marked `e2e`. If this machine cannot run them (not root, a tool
missing) each of them errors with the reason: they never silently pass or skip.

A test module may set `NETNS_PREFIX = "wgx"` (its helper's short prefix); the `topo` fixture
then names namespaces `wgx-<test name>-<role>-<rand>` and interfaces `wgx<rand>`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Topology, clean_stale, run_checked

E2E_DIR = Path(__file__).resolve().parent
REQUIRED_TOOLS = ("ip", "wg", "wireguard-go", "iperf3", "ping", "ncat", "ss")
DEFAULT_PREFIX = "wgt"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _why_e2e_cannot_run() -> str | None:
    if os.geteuid() != 0:
        return (
            "the e2e tests need root (network namespaces, TUN devices, /var/run/wireguard); "
            "run the suite as root, e.g. `sudo python3 -m pytest -q`, or deselect them "
            "explicitly with `-m 'not e2e'`"
        )
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"missing tools for the e2e tests: {', '.join(missing)} (install them with .ci/run "
            "or apt-get install iproute2 wireguard-go wireguard-tools iperf3 iputils-ping ncat)"
        )
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing: userspace WireGuard cannot create TUN interfaces"
    probe = run_checked(["ip", "netns", "list"], check=False)
    if probe.returncode != 0:
        return f"`ip netns list` failed: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def e2e_environment() -> None:
    """Fails (loudly, in every e2e test) when the machine cannot run e2e tests; else removes
    what earlier, aborted runs left behind (only records of dead owners)."""
    reason = _why_e2e_cannot_run()
    if reason:
        pytest.fail(reason, pytrace=False)
    clean_stale()


def _prefix_for(request: pytest.FixtureRequest) -> str:
    short = getattr(request.module, "NETNS_PREFIX", DEFAULT_PREFIX)
    test_name = re.sub(r"[^A-Za-z0-9]+", "_", request.node.name.removeprefix("test_"))
    return f"{short}-{test_name[:24].strip('_')}"


@pytest.fixture
def topo(e2e_environment: None, request: pytest.FixtureRequest) -> Iterator[Topology]:
    """A Topology for this test; everything it made is removed afterwards, also on failure."""
    with Topology(_prefix_for(request)) as topology:
        yield topology
