"""`wgpy demo --seconds`: iperf3 takes whole seconds (it read "0.5" as 0 and ran until the
demo's timeout, which then escaped as a traceback), and a throughput run that does not finish
is reported, not raised."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from wgpy.cli import demo


@pytest.mark.parametrize("seconds", ["0.5", "0", "-1", "2.5", "x"])
def test_seconds_must_be_whole_and_positive(seconds: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo.os, "geteuid", lambda: 1000)  # nothing past the arguments runs
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--seconds", seconds])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "wgpy demo: error: argument --seconds:" in err and repr(seconds) in err
    assert "Traceback" not in err


def test_whole_seconds_accepted() -> None:
    assert demo._whole_seconds("1") == 1
    assert demo._whole_seconds("10") == 10


class _Server:
    def kill(self) -> None:
        pass

    def wait(self) -> int:
        return 0


class _Lab:
    """The two calls _throughput makes of a Lab; the client never finishes."""

    def in_ns(self, index: int) -> dict[str, Any]:
        return {}

    def run(self, index: int, argv: list[str], timeout: float = 30) -> Any:
        raise subprocess.TimeoutExpired(argv, timeout)


def test_iperf3_that_does_not_finish_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(demo.subprocess, "Popen", lambda *args, **kwargs: _Server())
    monkeypatch.setattr(demo.time, "sleep", lambda seconds: None)
    assert demo._throughput(_Lab(), 2) == "iperf3 failed: no result in 22 s"  # type: ignore[arg-type]
