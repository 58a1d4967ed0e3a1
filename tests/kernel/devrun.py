"""Developer aid: boot the VM and run some guest tests (`python3 tests/kernel/devrun.py -k x`)."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernelvm as vm

shared = Path(tempfile.mkdtemp(prefix="wgpy-kernel-dev-", dir="/var/tmp"))
vm.collect_guest_tests(shared)
vm.warm_pycache(shared)
run = vm.boot_and_run(shared, sys.argv[1:])
print(run.console[-20000:])
print(f"{run.accelerator} {run.seconds:.0f}s status={run.status} shared={shared}")
