"""The C extension for the tests: imported, or a FAIL where this machine can build it (a C
compiler, Python.h and OpenSSL's headers -- install.sh installs them) or WGPY_REQUIRE_FASTPATH=1,
and a skip saying why only where it cannot be built."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import pytest


def can_build() -> str | None:
    """Why the extension cannot be built here, or None when it can."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        return "no C compiler"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python.h (python3-dev)"
    if not any(Path(d, "openssl", "evp.h").exists() for d in ("/usr/include", "/usr/local/include")):
        return "no OpenSSL headers (libssl-dev)"
    return None


def load_c():
    try:
        from wgpy import _fastpath
    except ImportError as error:
        missing_tools = can_build()
        if os.environ.get("WGPY_REQUIRE_FASTPATH") == "1" or missing_tools is None:
            pytest.fail(f"wgpy._fastpath is not importable although it can be built here "
                        f"(run `pip install -e .` or install.sh): {error}")
        pytest.skip(f"wgpy._fastpath cannot be built on this machine: {missing_tools}")
    return _fastpath
