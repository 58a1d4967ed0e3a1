"""The optional C extension wgpy._fastpath (everything else is in pyproject.toml).

`optional=True`: when there is no compiler, no Python headers or no OpenSSL 3 headers
(libssl-dev), the build says so and the install goes on without it; wgpy then runs the pure
Python path (wgpy/fastpath.py decides which). install.sh installs the build dependencies.
WGPY_CFLAGS adds compiler flags (tools/asan.sh builds with the sanitizers that way).
"""

import hashlib
import os
import shlex

from setuptools import Extension, setup

extra = shlex.split(os.environ.get("WGPY_CFLAGS", ""))
SOURCE = "src/wgpy/_fastpath.c"
# the module reports the hash of the source it was built from: a test fails on a stale build
with open(SOURCE, "rb") as source:
    source_sha256 = hashlib.sha256(source.read()).hexdigest()

setup(
    ext_modules=[
        Extension(
            "wgpy._fastpath",
            [SOURCE],
            define_macros=[("WGPY_FASTPATH_SOURCE_SHA256", f'"{source_sha256}"')],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                                "-Wno-unused-parameter",
                                *extra],
            extra_link_args=extra,
            optional=True,
        )
    ]
)
