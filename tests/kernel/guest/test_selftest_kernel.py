"""The userspace adaptation of the kernel's netns.sh selftest (tests/e2e/test_selftest_netns.py)
with the kernel module as side 0 ($ns1) and wgpy-daemon as side 1 ($ns2): every check of the
adaptation, run with a real kernel peer. Known wgpy deviations are the adaptation's own
KNOWN_FAILURES (strict xfail; the host reports them as xfailed).
"""

from __future__ import annotations

import pytest
from test_selftest_netns import *


@pytest.fixture(scope="session")
def e2e_environment(wireguard_module: None) -> None:
    """The adaptation's class topologies ask for this (tests/e2e/conftest.py on the host)."""


@pytest.fixture(scope="module")
def impls() -> tuple[str, str]:
    return ("kernel", "wgpy")
