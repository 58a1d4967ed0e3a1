"""Which implementation of the per-packet arithmetic runs: the one place that decides.

The C extension wgpy._fastpath (OpenSSL's EVP ChaCha20-Poly1305, checksums and TSO in C) when
it was built and `WGPY_PURE` is not set to 1; else wgpy._purepath, the pure-Python reference
with the same functions and the same bytes out. Callers import the functions from here:

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

import os

from wgpy import _purepath

IMPLEMENTATION: str
DESCRIPTION: str

if os.environ.get("WGPY_PURE") == "1":
    _impl = _purepath
    IMPLEMENTATION = "python"
    DESCRIPTION = "pure Python (WGPY_PURE=1)"
else:
    try:
        from wgpy import _fastpath as _impl  # type: ignore[no-redef]
    except ImportError as error:
        _impl = _purepath
        IMPLEMENTATION = "python"
        DESCRIPTION = f"pure Python (the C extension is not built: {error})"
    else:
        IMPLEMENTATION = "c"
        DESCRIPTION = "C (wgpy._fastpath, OpenSSL EVP ChaCha20-Poly1305)"

AeadContext = _impl.AeadContext
seal_run = _impl.seal_run
open_run = _impl.open_run
internet_checksum = _impl.internet_checksum
checksums_valid = _impl.checksums_valid
tso_segment = _impl.tso_segment
gro_coalesce = _impl.gro_coalesce

__all__ = [
    "DESCRIPTION",
    "IMPLEMENTATION",
    "AeadContext",
    "checksums_valid",
    "gro_coalesce",
    "internet_checksum",
    "open_run",
    "seal_run",
    "tso_segment",
]
