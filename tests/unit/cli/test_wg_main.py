"""`wgpy` main(): dispatch, exit codes, messages and the requests it builds (fake devices)."""

from __future__ import annotations

import errno
import io
import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest

from wgpy.cli import wg
from wgpy.keys import key_from_base64, key_to_base64, public_key
from wgpy.model import DeviceState, PeerSet, PeerState, SetRequest

K = [bytes([i + 1] * 32) for i in range(8)]
B = [key_to_base64(k) for k in K]


class FakeControl:
    def __init__(self, devices: dict[str, DeviceState], fail: dict[str, int] | None = None):
        self.devices = devices
        self.fail = fail or {}
        self.sets: list[tuple[str, SetRequest]] = []

    def list_interfaces(self) -> list[str]:
        return list(self.devices) + list(self.fail)

    def get(self, ifname: str) -> DeviceState:
        if ifname in self.fail:
            raise OSError(self.fail[ifname], os.strerror(self.fail[ifname]))
        if ifname not in self.devices:
            raise OSError(errno.EPROTONOSUPPORT, os.strerror(errno.EPROTONOSUPPORT))
        return self.devices[ifname]

    def set(self, ifname: str, request: SetRequest) -> None:
        if ifname not in self.devices:
            raise OSError(errno.EPROTONOSUPPORT, os.strerror(errno.EPROTONOSUPPORT))
        self.sets.append((ifname, request))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeControl:
    control = FakeControl({
        "wg0": DeviceState(private_key=K[0], listen_port=1,
                           peers=[PeerState(public_key=K[1]), PeerState(public_key=K[2])]),
        "wg1": DeviceState(),
    })
    monkeypatch.setattr(wg, "control_factory", lambda: control)
    monkeypatch.setenv("WG_COLOR_MODE", "never")
    monkeypatch.setenv("WG_ENDPOINT_RESOLUTION_RETRIES", "0")
    monkeypatch.delenv("WG_HIDE_KEYS", raising=False)
    return control


def run(capfdbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, str, str]:
    status = wg.main(list(args), prog="wg")
    out, err = capfdbinary.readouterr()
    return status, out.decode(), err.decode()


def test_dispatch_and_usage(fake: FakeControl, capfdbinary) -> None:
    status, out, err = run(capfdbinary, "--help")
    assert status == 0 and out.startswith("Usage: wg <cmd> [<args>]\n\nAvailable subcommands:\n")
    assert "  syncconf: Synchronizes a configuration file to a WireGuard interface\n" in out
    status, out, err = run(capfdbinary, "frobnicate")
    assert status == 1 and out == ""
    assert err.startswith("Invalid subcommand: `frobnicate'\nUsage: wg <cmd>")
    status, out, err = run(capfdbinary, "--version")
    assert status == 0 and "wireguard-tools v1.0.20210914" in out
    status, out, _ = run(capfdbinary)  # no arguments = show
    assert status == 0 and out.startswith("interface: wg0\n") and "\ninterface: wg1\n" in out


def test_show_all_errors_and_status(fake: FakeControl, capfdbinary) -> None:
    fake.fail["wg9"] = errno.EACCES
    status, out, err = run(capfdbinary, "show", "all", "listen-port")
    assert (status, out, err) == (0, "wg0\t1\nwg1\t0\n",
                                  "Unable to access interface wg9: Permission denied\n")
    status, out, err = run(capfdbinary, "show", "all", "nope")
    assert status == 1 and out == "" and err.startswith("Invalid parameter: `nope'\nUsage: wg show {")
    fake.devices.clear()
    status, out, err = run(capfdbinary, "show")  # every interface failed: status 1
    assert status == 1 and out == ""
    fake.fail.clear()
    assert run(capfdbinary, "show", "interfaces") == (0, "", "")


def test_show_single(fake: FakeControl, capfdbinary) -> None:
    assert run(capfdbinary, "show", "interfaces") == (0, "wg0 wg1\n", "")
    assert run(capfdbinary, "show", "wg0", "peers") == (0, f"{B[1]}\n{B[2]}\n", "")
    assert run(capfdbinary, "show", "nope") == (
        1, "", "Unable to access interface: Protocol not supported\n")
    status, _, err = run(capfdbinary, "show", "wg0", "peers", "x")
    assert status == 1 and err.startswith("Usage: wg show")
    status, _, err = run(capfdbinary, "show", "--help")
    assert status == 0 and err.startswith("Usage: wg show")
    assert run(capfdbinary, "showconf", "wg1") == (0, "[Interface]\n\n", "")


def test_show_json(fake: FakeControl, capfdbinary, monkeypatch) -> None:
    status, out, _ = run(capfdbinary, "show", "--json")
    document = json.loads(out)
    assert status == 0 and [i["name"] for i in document["interfaces"]] == ["wg0", "wg1"]
    assert document["interfaces"][0]["private_key"] == "(hidden)"
    status, out, _ = run(capfdbinary, "show", "wg0", "--json", "--show-keys")
    assert json.loads(out)["interfaces"][0]["private_key"] == B[0]
    monkeypatch.setenv("WG_HIDE_KEYS", "never")
    status, out, _ = run(capfdbinary, "show", "wg0", "--json")
    assert json.loads(out)["interfaces"][0]["private_key"] == B[0]
    status, out, err = run(capfdbinary, "show", "nope", "--json")
    assert status == 1 and json.loads(out) == {"interfaces": []}
    assert err == "Unable to access interface nope: Protocol not supported\n"


def test_set_builds_the_request(fake: FakeControl, capfdbinary, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(B[3] + "\n")
    empty = tmp_path / "empty"
    empty.write_text("")
    status, out, err = run(
        capfdbinary, "set", "wg0", "listen-port", "51820", "fwmark", "0x10", "private-key",
        str(key_file), "peer", B[4], "preshared-key", str(empty), "endpoint", "[fd00::1]:5",
        "allowed-ips", " 10.0.0.1/8 ,fd00::/64", "persistent-keepalive", "off",
        "peer", B[5], "remove")
    assert (status, out) == (0, "")
    assert err == "Warning: AllowedIP has nonzero host part: 10.0.0.1/8\n"
    assert fake.sets == [("wg0", SetRequest(
        private_key=K[3], listen_port=51820, fwmark=16,
        peers=[PeerSet(public_key=K[4], preshared_key=bytes(32), endpoint=("fd00::1", 5),
                       persistent_keepalive=0, replace_allowed_ips=True,
                       allowed_ips=[ipaddress.ip_network("10.0.0.0/8"),
                                    ipaddress.ip_network("fd00::/64")]),
               PeerSet(public_key=K[5], remove=True)]))]


@pytest.mark.parametrize(("args", "message"), [
    (["listen-port"], "Invalid argument: listen-port\n"),
    (["peer", B[1], "listen-port", "1"], "Invalid argument: listen-port\n"),
    (["remove"], "Invalid argument: remove\n"),
    (["peer", "abc"], "Key is not the correct length or format: `abc'\n"),
    (["fwmark", "x"], "Fwmark is neither 0/off nor 0-0xffffffff: `x'\n"),
    (["peer", B[1], "allowed-ips", "1.2.3.4/33"],
     "AllowedIP is not in the correct format: `1.2.3.4/33'\n"),
    (["peer", B[1], "endpoint", "1.2.3.4"], "Unable to find port of endpoint: `1.2.3.4'\n"),
    (["private-key", "/nonexistent"], "fopen: No such file or directory\n"),
])
def test_set_rejections_send_nothing(fake: FakeControl, capfdbinary, args, message) -> None:
    assert run(capfdbinary, "set", "wg0", *args) == (1, "", message)
    assert fake.sets == []


def test_set_unknown_interface_and_long_names(fake: FakeControl, capfdbinary) -> None:
    assert run(capfdbinary, "set", "nope", "listen-port", "1") == (
        1, "", "Unable to modify interface: Protocol not supported\n")
    fake.devices["abcdefghijklmno"] = DeviceState()
    assert run(capfdbinary, "set", "abcdefghijklmnopqrs", "listen-port", "1")[0] == 0
    assert fake.sets[-1][0] == "abcdefghijklmno"  # truncated to IFNAMSIZ - 1, like wg


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_setconf_addconf_syncconf_requests(fake: FakeControl, capfdbinary, tmp_path) -> None:
    conf = write(tmp_path, "c.conf", f"[Interface]\nListenPort = 7\n[Peer]\nPublicKey = {B[2]}\n"
                                     f"[Peer]\nPublicKey = {B[5]}\nAllowedIPs = 10.0.0.0/8\n")
    assert run(capfdbinary, "setconf", "wg0", conf) == (0, "", "")
    request = fake.sets[-1][1]
    assert (request.private_key, request.listen_port, request.fwmark, request.replace_peers) == (
        bytes(32), 7, 0, True)
    assert [(p.public_key, p.replace_allowed_ips) for p in request.peers] == [
        (K[2], True), (K[5], True)]
    assert run(capfdbinary, "addconf", "wg0", conf) == (0, "", "")
    request = fake.sets[-1][1]
    assert (request.private_key, request.listen_port, request.fwmark, request.replace_peers) == (
        None, 7, None, False)
    assert run(capfdbinary, "syncconf", "wg0", conf) == (0, "", "")
    request = fake.sets[-1][1]
    # wg0 runs K[1] and K[2]; the file keeps K[2]: only K[1] is removed, nothing replaced
    assert request.replace_peers is False
    assert [(p.public_key, p.remove) for p in request.peers] == [
        (K[1], True), (K[2], False), (K[5], False)]
    # syncconf onto a device without peers is a setconf
    assert run(capfdbinary, "syncconf", "wg1", conf) == (0, "", "")
    assert fake.sets[-1][1].replace_peers is True


def test_config_errors(fake: FakeControl, capfdbinary, tmp_path) -> None:
    bad = write(tmp_path, "bad.conf", "[Interface]\n\nAddress = 10.0.0.1/24\n")
    assert run(capfdbinary, "setconf", "wg0", bad) == (
        1, "", f"{bad}:3: Line unrecognized: `Address=10.0.0.1/24'\nConfiguration parsing error\n")
    nokey = write(tmp_path, "nokey.conf", "[Peer]\nAllowedIPs = 10.0.0.0/8\n")
    assert run(capfdbinary, "addconf", "wg0", nokey) == (
        1, "", f"{nokey}:1: A peer is missing a public key\nInvalid configuration\n")
    assert run(capfdbinary, "setconf", "wg0") == (
        1, "", "Usage: wg setconf <interface> <configuration filename>\n")
    assert run(capfdbinary, "syncconf", "wg0", "/nonexistent") == (
        1, "", "fopen: No such file or directory\n")
    assert fake.sets == []
    conf = write(tmp_path, "ok.conf", f"[Peer]\nPublicKey = {B[2]}\n")
    assert run(capfdbinary, "syncconf", "nope", conf) == (
        1, "", "Unable to retrieve current interface configuration: Protocol not supported\n")


class Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def test_pubkey(capfdbinary, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", Stdin(B[0].encode() + b"\n\0 \t"))
    assert run(capfdbinary, "pubkey") == (0, key_to_base64(public_key(K[0])) + "\n", "")
    for data, message in ((b"short", "wg: Key is not the correct length or format\n"),
                          (B[0].encode() + b"x", "wg: Trailing characters found after key\n"),
                          (b"!" * 44, "wg: Key is not the correct length or format\n")):
        monkeypatch.setattr("sys.stdin", Stdin(data))
        assert run(capfdbinary, "pubkey") == (1, "", message)


def test_genkey_file_is_private(tmp_path: Path) -> None:
    import subprocess
    import sys

    target = tmp_path / "private.key"
    target.touch()
    target.chmod(0o660)
    with open(target, "wb") as handle:
        result = subprocess.run([sys.executable, "-m", "wgpy.cli.wg", "genkey"], stdout=handle,
                                stderr=subprocess.PIPE, check=True)
    assert result.stderr == b""  # not world accessible: no warning (as wg)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    key = key_from_base64(target.read_text())
    assert key[0] & 7 == 0 and key[31] & 0xC0 == 0x40  # clamped
