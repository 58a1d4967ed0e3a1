"""Boots one virtme-ng VM with a Debian kernel that ships wireguard.ko and runs pytest inside it.

Theory of operation: the host's root filesystem is shared read-only into the guest (virtme-ng),
so the guest runs this very checkout with the host's Python, `wg`, `ip` and `iperf3`; only the
`--rwdir` directory (the "shared" directory below) is writable in both. The host
  1. compiles what the guest will import into a PYTHONPYCACHEPREFIX inside the shared
     directory (a read-only checkout has no __pycache__: every guest start would recompile),
  2. writes a shell script there that runs pytest on tests/kernel/guest with a reporting plugin
     writing one JSON line per test phase into results.jsonl, then the exit status,
  3. boots the VM with that script as the command and waits (bounded) for it.
/dev/kvm is used only where it is a real KVM (kvm_intel / kvm_amd); otherwise (and on these
machines, where /dev/kvm is kvm_pvm, which cannot boot an unmodified kernel) qemu emulates the
CPU (TCG), ~10-20x slower than the host for Python.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
GUEST_DIR = KERNEL_DIR / "guest"
REPO_ROOT = KERNEL_DIR.parents[1]
SRC_DIR = REPO_ROOT / "src"
VNG_VENV = Path(os.environ.get("WGPY_VNG_VENV", "/opt/wgpy-vng"))
RESULTS_NAME = "results.jsonl"
STATUS_NAME = "guest-status"
CURRENT_TEST_NAME = "current-test"  # the guest test running now (rewritten at each start)
MONITOR_NAME = "monitor.log"  # the guest's load, memory and process count every 10 s
QEMU_LOG_NAME = "qemu.log"  # qemu's log of CPU resets (-d cpu_reset): boot, and a triple fault
# The whole guest run (boot + pytest inside) may take this long before it is stopped. Measured
# under TCG on a loaded 2-core machine: see README ("Kernel tests in a VM").
VM_TIMEOUT = float(os.environ.get("WGPY_KERNEL_VM_TIMEOUT", "3000"))


# The flavour install.sh installs (linux-image-6.12-amd64, Debian's plain kernel); another
# flavour in /boot (rt-amd64, cloud-amd64) is used only when this one is not there.
KERNEL_FLAVOUR = os.environ.get("WGPY_KERNEL_FLAVOUR", "amd64")


def kernel_versions() -> list[str]:
    """Versions in /boot whose modules ship wireguard.ko: those of KERNEL_FLAVOUR (the part
    after the Debian ABI, e.g. 6.12.118+deb12-amd64) first, newest first within each."""
    found = []
    for image in Path("/boot").glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        wireguard = Path("/lib/modules") / version / "kernel/drivers/net/wireguard"
        if any(wireguard.glob("wireguard.ko*")):
            found.append(version)
    found.sort(reverse=True)
    return sorted(found, key=lambda v: v.split("-", 1)[-1] != KERNEL_FLAVOUR)


def why_vm_cannot_run() -> str | None:
    install_hint = "; install.sh installs it (as root: bash install.sh)"
    if os.geteuid() != 0:
        return "the kernel tests need root (qemu, network namespaces inside the VM)"
    if not (VNG_VENV / "bin" / "vng").exists():
        return f"virtme-ng is missing ({VNG_VENV}/bin/vng){install_hint}"
    if shutil.which("qemu-system-x86_64") is None:
        return f"qemu-system-x86_64 is missing{install_hint}"
    if not Path("/bin/busybox").exists() and shutil.which("busybox") is None:
        return f"busybox is missing{install_hint}"
    if not kernel_versions():
        return f"no kernel in /boot ships wireguard.ko{install_hint}"
    return None


def real_kvm() -> bool:
    """True when /dev/kvm is a hardware KVM that boots an unmodified kernel."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    modules = Path("/sys/module")
    if (modules / "kvm_pvm").exists():
        return False
    return (modules / "kvm_intel").exists() or (modules / "kvm_amd").exists()


def guest_environment(shared: Path) -> dict[str, str]:
    pythonpath = [str(SRC_DIR)]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    return {
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "PYTHONPYCACHEPREFIX": str(shared / "pycache"),
        "PYTHONUNBUFFERED": "1",
        "WGPY_KERNEL_GUEST": "1",
        "WGPY_KERNEL_RESULTS": str(shared / RESULTS_NAME),
        "WGPY_KERNEL_CURRENT_TEST": str(shared / CURRENT_TEST_NAME),
        "HOME": str(shared),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }


def pytest_argv(extra: list[str]) -> list[str]:
    """pytest on the guest tests alone: their own ini file (rootdir), not the repo's."""
    return [sys.executable, "-m", "pytest", "-c", str(GUEST_DIR / "pytest.ini"),
            "--rootdir", str(GUEST_DIR), "-p", "no:cacheprovider", *extra, str(GUEST_DIR)]


def collect_guest_tests(shared: Path) -> list[str]:
    """Node ids of the guest tests, collected on the host; this also warms the pycache prefix
    with everything pytest and the test modules import."""
    env = {**os.environ, **guest_environment(shared), "WGPY_KERNEL_COLLECT_ONLY": "1"}
    result = subprocess.run(
        pytest_argv(["--collect-only", "-q"]), check=False, env=env, capture_output=True, text=True,
        timeout=300, cwd=shared,
    )
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    if result.returncode != 0 or not ids:
        raise RuntimeError(f"collecting the guest tests failed ({result.returncode}):\n"
                           f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return ids


def warm_pycache(shared: Path) -> None:
    """Compile wgpy, the harness and what the daemon and tools import into the prefix."""
    env = {**os.environ, **guest_environment(shared)}
    script = (
        "import compileall, importlib, pkgutil, sys, wgpy\n"
        f"compileall.compile_dir({str(SRC_DIR)!r}, quiet=1)\n"
        f"compileall.compile_dir({str(REPO_ROOT / 'tests')!r}, quiet=1)\n"
        "for m in pkgutil.walk_packages(wgpy.__path__, 'wgpy.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300,
                   capture_output=True)


@dataclass
class GuestRun:
    accelerator: str
    console: str
    seconds: float
    status: int | None  # guest pytest's exit status; None if it never finished
    results: dict[str, dict[str, object]] = field(default_factory=dict)


def read_results(path: Path) -> dict[str, dict[str, object]]:
    """nodeid -> {'outcome', 'when', 'longrepr', 'duration'}: the first phase that did not
    pass, else the call."""
    results: dict[str, dict[str, object]] = {}
    if not path.exists():
        return results
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a VM stopped mid-write
        previous = results.get(record["nodeid"])
        if previous is None or previous["outcome"] == "passed":
            results[record["nodeid"]] = record
    return results


def boot_and_run(shared: Path, pytest_extra: list[str] | None = None) -> GuestRun:
    version = kernel_versions()[0]
    env_lines = "".join(f"export {k}={shlex.quote(v)}\n"
                        for k, v in guest_environment(shared).items())
    argv = shlex.join(pytest_argv(["-q", "-rfE", *(pytest_extra or [])]))
    script = shared / "guest.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"{env_lines}"
        f"cd {shlex.quote(str(shared))}\n"
        # the guest kernel's log, for whoever looks into a failed run (the console has none)
        f"cat /dev/kmsg > {shlex.quote(str(shared / 'dmesg.log'))} 2>&1 &\n"
        # and its state over time, for a VM that stops without a word
        "while :; do echo \"$(cut -d' ' -f1 /proc/uptime)s $(cut -d' ' -f1-4 /proc/loadavg)"
        " $(grep -E '^(MemAvailable|Shmem|Slab):' /proc/meminfo | tr -s ' ' | tr '\\n' ' ')"
        "procs $(ls -d /proc/[0-9]* 2>/dev/null | wc -l)"
        # qemu's i6300esb watchdog (vng adds it) resets the VM when armed and not fed in time
        " watchdog $(cat /sys/class/watchdog/watchdog0/state 2>/dev/null || echo none)"
        "\"; sleep 10; done"
        f" > {shlex.quote(str(shared / MONITOR_NAME))} 2>&1 &\n"
        f"{argv}\n"
        f"echo $? > {shlex.quote(str(shared / STATUS_NAME))}\n"
    )
    script.chmod(0o755)
    accelerator = "kvm" if real_kvm() else "tcg"
    vng = _vng_argv(version, shared, script, tcg=accelerator == "tcg")
    started = time.monotonic()
    console = _run_vng(vng, shared)
    if accelerator == "kvm" and not (shared / STATUS_NAME).exists() \
            and not (shared / RESULTS_NAME).exists():
        accelerator = "tcg (kvm failed to boot)"
        vng = _vng_argv(version, shared, script, tcg=True)
        console += "\n--- retry without KVM ---\n" + _run_vng(vng, shared)
    seconds = time.monotonic() - started
    status_file = shared / STATUS_NAME
    status = int(status_file.read_text().strip()) if status_file.exists() else None
    return GuestRun(accelerator, console, seconds, status, read_results(shared / RESULTS_NAME))


def why_stopped(shared: Path) -> str:
    """For a guest that never finished: the test it was running and its last recorded state."""
    current = shared / CURRENT_TEST_NAME
    running = current.read_text().strip() if current.exists() else "none recorded"
    monitor = shared / MONITOR_NAME
    states = monitor.read_text(errors="replace").splitlines()[-3:] if monitor.exists() else []
    qemu_log = shared / QEMU_LOG_NAME
    qemu = qemu_log.read_text(errors="replace") if qemu_log.exists() else ""
    return (f"the guest was running: {running}\n"
            f"qemu's log ({qemu_log}): "
            + ("a triple fault" if "Triple fault" in qemu else "no triple fault") + "\n"
            "its last states (uptime, load, memory in kB, processes, watchdog; every 10 s):\n  "
            + "\n  ".join(states or ["none recorded"]))


def _vng_argv(version: str, shared: Path, script: Path, tcg: bool) -> list[str]:
    # qemu's own word on a guest that resets itself (a triple fault says so in its log)
    qemu_opts = f"-d cpu_reset -D {shared / QEMU_LOG_NAME}"
    if tcg:
        # One host thread runs both emulated CPUs. With a thread each (qemu's default) the
        # guest kernel died now and then: "Oops: int3" at a jump site in
        # __netif_receive_skb_core ("Fatal exception in interrupt") while a ping flipped
        # netstamp_needed_key. The kernel flips a static key by writing an int3 over each
        # jump site, then the rest, then the first byte, syncing every CPU in between; the
        # other emulated CPU still ran the int3 after that. The guest rebooted, which ends
        # qemu (-no-reboot): the "lost VMs" of README's kernel section.
        qemu_opts += " -accel tcg,thread=single"
    argv = [str(VNG_VENV / "bin" / "vng"), "--run", f"/boot/vmlinuz-{version}",
            "--cpus", "2", "--memory", "2G", "--rwdir", str(shared), "--exec", str(script),
            # the guest kernel's errors on the console: a panic never reaches dmesg.log
            "--verbose", "--append", "loglevel=4", f"--qemu-opts={qemu_opts}"]
    if tcg:
        argv.insert(3, "--disable-kvm")
    return argv


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum} while the VM runs")


def _run_vng(vng: list[str], shared: Path) -> str:
    """Run vng; its output is piped (qemu re-opens /proc/self/fd/1: a file would be rewound)."""
    env = {**os.environ, "PATH": f"{VNG_VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    process = subprocess.Popen(
        vng, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, cwd=shared, start_new_session=True,
    )
    # pytest terminated while the VM runs (.ci/run's timeout sends SIGTERM; Ctrl-C) must not
    # leave qemu behind: SIGTERM becomes an exception here, and any exception takes the VM's
    # whole process group (vng, virtme-run, qemu) with it
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        output, _ = process.communicate(timeout=VM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output += f"\n--- VM stopped after {VM_TIMEOUT:.0f} s ---\n".encode()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = output.decode(errors="replace") + f"\n--- vng exited with status {process.returncode} ---\n"
    (shared / "console.log").write_text(text)
    return text


# -- one shared directory and one collection per host pytest run ---------------------------------

_shared: Path | None = None
keep_shared = False  # set after a failing run: its logs stay
_collected: list[str] | None = None
_collect_error: str | None = None


def created_shared_dir() -> Path | None:
    return _shared


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
        reason = why_vm_cannot_run()
        if reason:
            _collect_error = reason
        else:
            try:
                _collected = collect_guest_tests(shared_dir())
            except (RuntimeError, OSError) as error:
                _collect_error = str(error)
    return _collected, _collect_error
