"""Peers by name: the `#disabled# ` marker (conf/disabled.py), disable/enable against a fake
device, the peers table and `show --names`."""

from __future__ import annotations

import errno
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy import keys, show
from wgpy.conf import ConfigError, parse_config, strip_config
from wgpy.conf.disabled import disable_lines, enable_line, find_disabled_peers, is_disabled_line
from wgpy.model import DeviceState, PeerState, SetRequest
from wgpy.ops import peers
from wgpy.ops.addpeer import OpsError

PHONE = keys.public_key(keys.generate_private_key())
LAPTOP = keys.public_key(keys.generate_private_key())
B64 = keys.key_to_base64
NOW = 1_800_000_000

SERVER = (
    "# hand-written\n"
    "[Interface]\n"
    f"PrivateKey = {B64(keys.generate_private_key())}\n"
    "ListenPort = 51820\n"
    "Address = 10.9.0.1/24\n"
    "\n"
    "[Peer]\n"
    "# friendly_name = phone\n"
    f"PublicKey = {B64(PHONE)}\n"
    "\n"
    "AllowedIPs = 10.9.0.2/32  # the phone\n"
    "Endpoint = 192.0.2.7:51820\n"
    "\n"
    "# the next one is the laptop\n"
    "\n"
    "# Name = laptop\n"
    "[Peer]\n"
    f"PublicKey = {B64(LAPTOP)}\n"
    "AllowedIPs = 10.9.0.3/32\n"
)


class FakeControl:
    def __init__(self, state: DeviceState | None) -> None:
        self.state = state
        self.requests: list[SetRequest] = []

    def get(self, ifname: str) -> DeviceState:
        if self.state is None:
            raise OSError(errno.ENODEV, "No such device")
        return self.state

    def set(self, ifname: str, request: SetRequest) -> None:
        self.requests.append(request)


def live() -> DeviceState:
    return DeviceState(peers=[
        PeerState(public_key=PHONE, allowed_ips=[ipaddress.ip_network("10.9.0.2/32")],
                  endpoint=("198.51.100.4", 40000), last_handshake_sec=NOW - 125,
                  rx_bytes=2048, tx_bytes=100),
        PeerState(public_key=LAPTOP, allowed_ips=[ipaddress.ip_network("10.9.0.3/32")]),
    ])


def test_disable_and_enable_touch_only_the_peer(tmp_path: Path) -> None:
    path = tmp_path / "wg0.conf"
    path.write_text(SERVER)
    path.chmod(0o644)
    control = FakeControl(live())
    result = peers.disable_peer("wg0", "PHONE", path, control)  # type: ignore[arg-type]
    assert (result.name, result.live, result.changed) == ("phone", True, True)
    (request,) = control.requests
    assert request.peers[0].public_key == PHONE and request.peers[0].remove
    text = path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600  # the one atomic 0600 writer
    assert text.splitlines()[6:12] == [
        "#disabled# [Peer]", "#disabled# # friendly_name = phone",
        f"#disabled# PublicKey = {B64(PHONE)}", "#disabled#",
        "#disabled# AllowedIPs = 10.9.0.2/32  # the phone",
        "#disabled# Endpoint = 192.0.2.7:51820"]
    assert text.splitlines()[12:] == SERVER.splitlines()[12:]  # the comments after it stay
    assert [p.public_key for p in parse_config(text).peers] == [LAPTOP]
    assert B64(PHONE) not in "".join(
        line for line in strip_config(text).splitlines() if not line.startswith("#"))
    (disabled,) = find_disabled_peers(text.splitlines())
    assert disabled.section.public_key == PHONE and disabled.numbers == list(range(7, 13))
    assert peers.names(peers.serverconf.load(path)) == {PHONE: "phone", LAPTOP: "laptop"}

    control.state = DeviceState(peers=[live().peers[1]])
    result = peers.enable_peer("wg0", B64(PHONE), path, control)  # type: ignore[arg-type]
    assert (result.name, result.live, result.changed) == ("phone", True, True)
    assert path.read_text() == SERVER
    added = control.requests[-1].peers[0]
    assert added.public_key == PHONE and added.allowed_ips == [ipaddress.ip_network("10.9.0.2/32")]
    assert added.endpoint == ("192.0.2.7", 51820) and added.replace_allowed_ips


def test_disable_when_not_running_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "wg0.conf"
    path.write_text(SERVER)
    control = FakeControl(None)
    result = peers.disable_peer("wg0", "laptop", path, control)  # type: ignore[arg-type]
    assert (result.live, result.changed) == (False, True) and control.requests == []
    again = peers.disable_peer("wg0", "laptop", path, control)  # type: ignore[arg-type]
    assert again.changed is False
    before = path.read_text()
    with pytest.raises(OpsError, match="no peer 'tablet' in "):
        peers.disable_peer("wg0", "tablet", path, control)  # type: ignore[arg-type]
    with pytest.raises(OpsError, match="no such config file"):
        peers.enable_peer("wg0", "laptop", tmp_path / "nope.conf", control)  # type: ignore[arg-type]
    assert path.read_text() == before


def test_a_broken_disabled_block_is_named_by_line() -> None:
    lines = ["[Interface]", "ListenPort = 1", "#disabled# [Peer]", "#disabled# PublicKey = nope"]
    with pytest.raises(ConfigError) as caught:
        find_disabled_peers(lines, "wg0.conf")
    assert caught.value.line == 4 and "wg0.conf" in str(caught.value)


def test_peers_table_and_json() -> None:
    server = peers.ServerConfig(Path("wg0.conf"), SERVER, parse_config(SERVER))
    table = peers.rows(server, live())
    text = peers.format_table(table, NOW, running=True)
    header, phone, laptop = text.splitlines()
    assert header.startswith("NAME    ADDRESSES    ENDPOINT") and header.endswith("  STATE")
    assert phone.startswith("phone   10.9.0.2/32  198.51.100.4:40000  2 minutes, 5 seconds ago")
    assert "2.00 KiB received, 100 B sent" in phone and phone.endswith("  enabled")
    assert laptop.startswith("laptop ") and "  never  " in laptop
    document = peers.as_json(table[0], NOW)
    assert document["name"] == "phone" and document["latest_handshake_ago"] == (
        "2 minutes, 5 seconds ago") and document["enabled"] and document["running"]
    # not running: the config's peers, the disabled one marked so
    disabled_text = "".join(
        line + "\n" for line in [*SERVER.splitlines()[:6],
                                 *disable_lines(SERVER.splitlines()[6:12]),
                                 *SERVER.splitlines()[12:]])
    server = peers.ServerConfig(Path("wg0.conf"), disabled_text, parse_config(disabled_text))
    table = peers.rows(server, None)
    assert [(r.name, r.status) for r in table] == [("laptop", "enabled"), ("phone", "disabled")]
    assert peers.format_table(table, NOW, running=False).splitlines()[2].endswith("  disabled")


def test_show_names_beside_the_key() -> None:
    options = show.ShowOptions(now=NOW, names={PHONE: "phone"})
    text = show.pretty("wg0", live(), options)
    assert f"peer: {B64(PHONE)} (phone)\n" in text and f"peer: {B64(LAPTOP)}\n" in text
    assert text.replace(" (phone)", "") == show.pretty("wg0", live(), show.ShowOptions(now=NOW))
    document = show.to_json("wg0", live(), False, names={PHONE: "phone"})
    assert [p["name"] for p in document["peers"]] == ["phone", None]
    assert "name" not in show.to_json("wg0", live(), False)["peers"][0]


comment = st.sampled_from(["# note", "#", "  # indented", "# friendly_name = x", ""])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(comment, max_size=3), st.lists(comment, max_size=3)),
                min_size=1, max_size=4), st.data())
def test_disable_then_enable_is_byte_identical(sections: list[tuple[list[str], list[str]]],
                                               data: st.DataObject) -> None:
    """Any peer of any file (comments and blank lines anywhere): disabling changes only that
    peer's lines, each by the prefix; wg's parser no longer sees it; enabling restores the
    file byte for byte."""
    lines = ["[Interface]", "ListenPort = 51820"]
    public_keys = []
    for before, inside in sections:
        key = keys.public_key(keys.generate_private_key())
        public_keys.append(key)
        lines += [*before, "[Peer]", f"PublicKey = {B64(key)}", *inside, "AllowedIPs = 10.0.0.1/32"]
    text = "".join(line + "\n" for line in lines)
    config = parse_config(text)
    index = data.draw(st.integers(0, len(config.peers) - 1))
    section = config.peers[index]
    first = section.source[0].number - 1
    last = max(line.number for line in section.source if line.key is not None)
    disabled = [*lines[:first], *disable_lines(lines[first:last]), *lines[last:]]
    assert len(disabled) == len(lines)
    for old, new in zip(lines, disabled, strict=True):
        assert new == old or new == "#disabled# " + old or (old == "" and new == "#disabled#")
    disabled_text = "".join(line + "\n" for line in disabled)
    remaining = [p.public_key for p in parse_config(disabled_text).peers]
    assert remaining == [k for i, k in enumerate(public_keys) if i != index]
    found = find_disabled_peers(disabled)
    assert [d.section.public_key for d in found] == [public_keys[index]]
    restored = list(disabled)
    for number in found[0].numbers:
        restored[number - 1] = enable_line(restored[number - 1])
    assert restored == lines
    assert all(not is_disabled_line(line) for line in restored)
