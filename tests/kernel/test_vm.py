"""Host side of the kernel group: each guest test's result, and the VM run as a whole."""

from __future__ import annotations

import kernelvm as vm
import pytest

# `e2e` too: the group needs root like every e2e test, so a run that leaves the root tests out
# (`-m 'not e2e'`) leaves the VM out as well instead of booting it. Set here, on the module,
# so that the selection never depends on the order in which collection hooks run.
pytestmark = [pytest.mark.kernel, pytest.mark.e2e]


def _console_tail(run: vm.GuestRun, lines: int = 60) -> str:
    tail = "\n".join(run.console.rstrip().splitlines()[-lines:])
    if run.status is None:
        tail += "\n" + vm.why_stopped(vm.shared_dir())
    return tail


def test_vm_ran_every_guest_test(guest_run: vm.GuestRun) -> None:
    """The VM booted, guest pytest finished and reported every test the host collected."""
    expected, _ = vm.guest_node_ids()
    assert expected, "no guest tests collected"
    if guest_run.status is None:
        pytest.fail(f"guest pytest never finished ({guest_run.accelerator}, "
                    f"{guest_run.seconds:.0f} s); console:\n{_console_tail(guest_run)}",
                    pytrace=False)
    missing = sorted(set(expected) - set(guest_run.results))
    assert not missing, f"no result from the guest for {missing}:\n{_console_tail(guest_run)}"
    assert guest_run.status in (0, 1), (
        f"guest pytest exited {guest_run.status}:\n{_console_tail(guest_run)}"
    )


def test_guest(guest_test: str, guest_run: vm.GuestRun) -> None:
    """One guest test, as it ran inside the VM."""
    result = guest_run.results.get(guest_test)
    if result is None:
        pytest.fail(f"{guest_test}: no result from the guest ({guest_run.accelerator}, "
                    f"exit {guest_run.status}); console:\n{_console_tail(guest_run)}",
                    pytrace=False)
    if result["outcome"] == "skipped" and result.get("wasxfail") is not None:
        pytest.xfail(f"in the VM: {result['wasxfail']}")  # a strict xfail of the guest
    if result["outcome"] != "passed":
        pytest.fail(f"{guest_test} {result['outcome']} in the VM ({result['when']}):\n"
                    f"{result['longrepr']}", pytrace=False)
