"""The systemd unit shipped as package data has the shape the issue asks for."""

from __future__ import annotations

import configparser
import importlib.resources


def test_unit_file_is_package_data_with_oneshot_service() -> None:
    text = importlib.resources.files("wgpy").joinpath("data/wgpy-quick@.service").read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text)
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    assert service["RemainAfterExit"] == "yes"
    assert service["ExecStart"] == "wgpy-quick up %i"
    assert service["ExecStop"] == "wgpy-quick down %i"
    assert service["ExecReload"] == (
        "/bin/bash -c 'exec wgpy syncconf %i <(exec wgpy-quick strip %i)'"
    )
    assert "network-online.target" in unit["Unit"]["After"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
