"""Run a test body in a forked child with a network namespace of its own (root only): just a
loopback and what the body creates; it disappears with the child, nothing to clean up."""

from __future__ import annotations

import ctypes
import os
import subprocess
import traceback
from collections.abc import Callable

import pytest

CLONE_NEWNET = 0x40000000


def in_new_netns(body: Callable[[], None]) -> None:
    """Run `body` in a child process with a fresh network namespace; re-raise its failure."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(reader)
        status = 0
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            body()
        except BaseException:  # noqa: BLE001 - everything goes back to the parent as text
            os.write(writer, traceback.format_exc().encode())
            status = 1
        finally:
            os.close(writer)
            os._exit(status)
    os.close(writer)
    report = b""
    while chunk := os.read(reader, 65536):
        report += chunk
    os.close(reader)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        pytest.fail("in the namespace:\n" + report.decode(errors="replace"), pytrace=False)
