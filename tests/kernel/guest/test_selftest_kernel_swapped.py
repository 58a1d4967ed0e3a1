"""The selftest adaptation (tests/e2e/test_selftest_netns.py) with the roles of
test_selftest_kernel.py swapped: wgpy-daemon as side 0 ($ns1) and the kernel module as side 1
($ns2). Every check that has two sides runs here with the other implementation on each: who
roams, who sits behind the NAT, whose source address must stick, who initiates.

Left out:
  TestConfiguration  drives side 0 alone (wgpy-daemon here, with no kernel peer), which the
                     host's e2e run already does; its 130,560 allowed IPs would cost minutes of
                     emulated Python.
  TestTraffic        as in test_selftest_kernel.py: its 44 checks took 246 s here (TCG, the
                     machine at load 4-5), and test_interop.py covers pings and iperf3 both
                     ways, IPv4/IPv6 inside and outside, against the kernel.
"""

from __future__ import annotations

import pytest
import selftest_guest  # noqa: F401 -- the emulated echo wait
from test_selftest_netns import *


@pytest.fixture(scope="module")
def impls() -> tuple[str, str]:
    return ("wgpy", "kernel")


del TestConfiguration, TestTraffic  # noqa: F821 -- (from the star import) see the docstring
