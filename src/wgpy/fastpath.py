"""Which implementation of the per-packet arithmetic runs: the one place that holds the choice.

The C extension wgpy._fastpath (OpenSSL's EVP ChaCha20-Poly1305, checksums and TSO in C) when
it was built, else wgpy._purepath, the pure-Python reference with the same functions and the
same bytes out. `select_from(environ)` lets the process's starter choose: `WGPY_PURE=1` selects
the pure-Python reference (wgpy-daemon calls it at start with its environment; this module and
the core never read the environment themselves). Callers look the functions up here when they
use them (`fastpath.seal_run(...)`, or bound once per batch), so a selection made at start
reaches every later call; an AeadContext keeps the implementation it was made with.

    AeadContext(key)                 one key; .zeroize() forgets it
    seal_run(ctx, receiver_index, counter, packets, mtu) -> list[bytes]
    open_run(ctx, datagrams) -> list[bytes | None]
    internet_checksum(data) -> int
    checksums_valid(packet, l4_start, protocol) -> bool
    tso_segment(vnet_header_and_packet) -> list[bytes]
    gro_coalesce(packets) -> list[bytes]  the TUN writes (vnet header + packet/super-packet)

IMPLEMENTATION is "c" or "python"; DESCRIPTION says which and why, for the daemon's start-up
log line and `wgpy demo`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from wgpy import _purepath

_built: ModuleType | None = None
_NOT_BUILT = ""
try:
    from wgpy import _fastpath  # type: ignore[attr-defined]  # a C extension: no stub
except ImportError as error:
    _NOT_BUILT = f"pure Python (the C extension is not built: {error})"
else:
    _built = _fastpath

IMPLEMENTATION: str
DESCRIPTION: str
AeadContext: Any
seal_run: Any
open_run: Any
internet_checksum: Any
checksums_valid: Any
tso_segment: Any
gro_coalesce: Any


def select(pure: bool, why: str = "") -> None:
    """Run the pure-Python reference (`pure`) or the C extension where it is built."""
    global IMPLEMENTATION, DESCRIPTION
    global AeadContext, seal_run, open_run, internet_checksum, checksums_valid, tso_segment
    global gro_coalesce
    if pure or _built is None:
        implementation = _purepath
        IMPLEMENTATION = "python"
        DESCRIPTION = f"pure Python ({why})" if pure else _NOT_BUILT
    else:
        implementation = _built
        IMPLEMENTATION = "c"
        DESCRIPTION = "C (wgpy._fastpath, OpenSSL EVP ChaCha20-Poly1305)"
    AeadContext = implementation.AeadContext
    seal_run = implementation.seal_run
    open_run = implementation.open_run
    internet_checksum = implementation.internet_checksum
    checksums_valid = implementation.checksums_valid
    tso_segment = implementation.tso_segment
    gro_coalesce = implementation.gro_coalesce


def select_from(environ: Mapping[str, str]) -> None:
    """The choice an environment asks for: WGPY_PURE=1 is the pure-Python reference."""
    select(environ.get("WGPY_PURE") == "1", "WGPY_PURE=1")


select(False)

__all__ = [
    "DESCRIPTION",
    "IMPLEMENTATION",
    "AeadContext",
    "checksums_valid",
    "gro_coalesce",
    "internet_checksum",
    "open_run",
    "seal_run",
    "select",
    "select_from",
    "tso_segment",
]
