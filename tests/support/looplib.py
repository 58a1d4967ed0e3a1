"""A DeviceLoop turning in a background thread, for tests that talk to it over a real socket."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from wgpy.io.loop import DeviceLoop


@contextlib.contextmanager
def spinning(loop: DeviceLoop) -> Iterator[DeviceLoop]:
    """Run `loop` in short rounds in a daemon thread until the block ends; then stop it."""
    running = threading.Event()
    running.set()

    def spin() -> None:
        while running.is_set():
            loop.run_once(max_wait=0.01)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        running.clear()
        thread.join(2)
