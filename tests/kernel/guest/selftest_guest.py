"""What the selftest adaptation (tests/e2e/test_selftest_netns.py) needs changed to run in the
VM, for the guest modules that run it (test_selftest_kernel*.py)."""

import selftest_lib

# netns.sh waits 1 s for each echo; under emulation (TCG) wgpy-daemon answers within that
# almost always, not always (seen: 1 echo of 10 late). Echoes that must be answered get 5 s
# here; pings that must go unanswered keep their 1 s (a longer wait only makes them slower).
EMULATED_ECHO_WAIT = 5.0
selftest_lib.ping.__defaults__ = (1, None, EMULATED_ECHO_WAIT, None)
