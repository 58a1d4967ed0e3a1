"""Developer aid: boot the VM and run some guest tests (`python3 tests/kernel/devrun.py -k x`).

Nothing happens on import (`pytest --doctest-modules` imports every module under tests/)."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernelvm as vm


def main(pytest_args: list[str]) -> int:
    reason = vm.why_vm_cannot_run()  # the kernel group's own check: root, vng, qemu, a kernel
    if reason:
        sys.exit(f"devrun: {reason}")
    shared = Path(tempfile.mkdtemp(prefix="wgpy-kernel-dev-", dir="/var/tmp"))
    vm.collect_guest_tests(shared)
    vm.warm_pycache(shared)
    run = vm.boot_and_run(shared, pytest_args)
    print(run.console[-20000:])
    print(f"{run.accelerator} {run.seconds:.0f}s status={run.status} shared={shared}")
    if run.status is None:
        print(vm.why_stopped(shared))
    return 0 if run.status == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt as stopped:  # Ctrl-C, SIGTERM: kernelvm has stopped the VM
        sys.exit(f"devrun: {stopped}")
