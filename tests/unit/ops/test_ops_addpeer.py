"""add-peer / remove-peer without a network: address allocation, config edits that keep every
other line, refusals that change nothing, and the live change through a fake device."""

from __future__ import annotations

import errno
import ipaddress
import stat
from pathlib import Path

import pytest

from wgpy import keys
from wgpy.cli import ops as commands
from wgpy.conf import parse_config
from wgpy.model import DeviceState, PeerState, SetRequest
from wgpy.ops import serverconf
from wgpy.ops.addpeer import (
    AddPeerRequest,
    OpsError,
    add_peer,
    allocate_addresses,
    next_free_address,
    remove_peer,
)

net = ipaddress.ip_network


@pytest.fixture(autouse=True)
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands here run against fakes; they must not depend on who runs the suite (the
    non-root refusal has its own test below, and an e2e test as uid 65534)."""
    monkeypatch.setattr(commands, "running_as_root", lambda: True)


class FakeControl:
    """A DeviceControl stand-in: one running interface (or none), records set requests."""

    def __init__(self, state: DeviceState | None, fail_set: bool = False) -> None:
        self.state = state
        self.requests: list[SetRequest] = []
        self.fail_set = fail_set

    def get(self, ifname: str) -> DeviceState:
        if self.state is None:
            raise OSError(errno.ENODEV, "No such device")
        return self.state

    def set(self, ifname: str, request: SetRequest) -> None:
        if self.fail_set:
            raise OSError(errno.EPERM, "Operation not permitted")
        self.requests.append(request)


SERVER_PRIVATE = keys.generate_private_key()
ALICE = keys.public_key(keys.generate_private_key())


def server_text(extra: str = "", address: str = "10.8.0.1/24, fd08::1/64") -> str:
    return (
        "# main VPN\n"
        "[Interface]\n"
        f"PrivateKey = {keys.key_to_base64(SERVER_PRIVATE)}\n"
        "ListenPort = 51820\n"
        f"Address = {address}   # inline comment\n"
        "PostUp = iptables -A FORWARD -i %i -j ACCEPT\n"
        "\n"
        "# alice's laptop\n"
        "[Peer]\n"
        f"PublicKey = {keys.key_to_base64(ALICE)}\n"
        "AllowedIPs = 10.8.0.2/32, fd08::2/128\n"
        f"{extra}"
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wg0.conf"
    path.write_text(text)
    path.chmod(0o600)
    return path


def request(path: Path, name: str = "phone", **kwargs: object) -> AddPeerRequest:
    kwargs.setdefault("endpoint", "vpn.example.com:51820")
    return AddPeerRequest(ifname="wg0", name=name, config_path=path, **kwargs)  # type: ignore[arg-type]


# -- allocation -----------------------------------------------------------------------------------


def test_next_free_address_skips_network_own_and_used() -> None:
    subnet = net("10.0.0.0/29")
    assert next_free_address(subnet, [net("10.0.0.1/32")]) == ipaddress.ip_address("10.0.0.2")
    assert next_free_address(subnet, [net("10.0.0.1/32"), net("10.0.0.2/31")]) == (
        ipaddress.ip_address("10.0.0.4"))
    # a gap left by a removed peer is reused first
    assert next_free_address(subnet, [net("10.0.0.1/32"), net("10.0.0.3/32")]) == (
        ipaddress.ip_address("10.0.0.2"))
    # .1 to .6 taken; .7 is the broadcast address
    assert next_free_address(subnet, [net("10.0.0.0/30"), net("10.0.0.4/31"),
                                      net("10.0.0.6/32")]) is None


def test_supernet_routes_do_not_take_the_subnet() -> None:
    # a peer routing everything (a site gateway) leaves the subnet's host addresses free
    assert next_free_address(net("10.0.0.0/24"), [net("0.0.0.0/0"), net("10.0.0.1/32")]) == (
        ipaddress.ip_address("10.0.0.2"))


def test_ipv6_allocation_skips_subnet_router_anycast() -> None:
    assert next_free_address(net("fd00::/64"), []) == ipaddress.ip_address("fd00::1")
    assert next_free_address(net("fd00::/64"), [net("fd00::1/128"), net("fd00::2/127")]) == (
        ipaddress.ip_address("fd00::4"))
    assert next_free_address(net("fd00::/128"), []) is None


def test_tiny_ipv4_subnets() -> None:
    assert next_free_address(net("10.0.0.0/32"), []) is None
    assert next_free_address(net("10.0.0.0/31"), [net("10.0.0.0/32")]) == (
        ipaddress.ip_address("10.0.0.1"))


def test_allocate_uses_config_and_live_peers(tmp_path: Path) -> None:
    config = parse_config(server_text())
    live = DeviceState(peers=[PeerState(public_key=b"\1" * 32,
                                        allowed_ips=[net("10.8.0.3/32"), net("fd08::3/128")])])
    got = allocate_addresses(config, live)
    assert [str(a) for a in got] == ["10.8.0.4/32", "fd08::4/128"]
    got = allocate_addresses(config, None)
    assert [str(a) for a in got] == ["10.8.0.3/32", "fd08::3/128"]


def test_allocate_v4_only_interface() -> None:
    config = parse_config(server_text(address="10.8.0.1/24"))
    assert [str(a) for a in allocate_addresses(config, None)] == ["10.8.0.3/32"]


# -- add-peer -------------------------------------------------------------------------------------


def test_add_peer_appends_block_and_keeps_every_other_line(tmp_path: Path) -> None:
    original = server_text()
    path = write(tmp_path, original)
    control = FakeControl(DeviceState(private_key=SERVER_PRIVATE, listen_port=51820))
    result = add_peer(request(path, dns=["10.8.0.1"]), control)  # type: ignore[arg-type]

    text = path.read_text()
    lines = text.splitlines()
    # the endpoint is remembered right under [Interface]; all original lines follow unchanged
    assert lines[2] == "# wgpy: Endpoint = vpn.example.com:51820"
    assert [line for i, line in enumerate(lines) if i != 2][: len(original.splitlines())] == (
        original.splitlines())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    config = parse_config(text)
    new_peer = config.peers[-1]
    assert serverconf.peer_name(new_peer) == "phone"
    assert new_peer.source[1].text == "# friendly_name = phone"  # right under [Peer]
    assert new_peer.public_key == result.public_key
    assert [str(n) for n in new_peer.allowed_ips] == ["10.8.0.3/32", "fd08::3/128"]

    client = parse_config(result.client_config)
    assert client.interface.private_key is not None
    assert keys.public_key(client.interface.private_key) == result.public_key
    assert [str(a) for a in client.interface.addresses] == ["10.8.0.3/32", "fd08::3/128"]
    assert client.interface.dns_servers == ["10.8.0.1"]
    (server_peer,) = client.peers
    assert server_peer.public_key == keys.public_key(SERVER_PRIVATE)
    assert server_peer.preshared_key == new_peer.preshared_key is not None
    assert server_peer.endpoint == "vpn.example.com:51820"
    assert [str(n) for n in server_peer.allowed_ips] == ["0.0.0.0/0", "::/0"]
    assert server_peer.persistent_keepalive == 25

    (live_request,) = control.requests
    (peer_set,) = live_request.peers
    assert peer_set.public_key == result.public_key and not peer_set.remove
    assert peer_set.preshared_key == new_peer.preshared_key
    assert peer_set.replace_allowed_ips
    assert [str(n) for n in peer_set.allowed_ips] == ["10.8.0.3/32", "fd08::3/128"]
    assert not live_request.replace_peers and live_request.private_key is None


def test_remembered_endpoint_is_reused_and_port_completed(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    add_peer(request(path, "one", endpoint="vpn.example.com"), FakeControl(None))
    assert "# wgpy: Endpoint = vpn.example.com:51820" in path.read_text()
    second = add_peer(request(path, "two", endpoint=None, preshared_key=False, keepalive=0),
                      FakeControl(None))
    client = parse_config(second.client_config)
    assert client.peers[0].endpoint == "vpn.example.com:51820"
    assert client.peers[0].preshared_key is None
    assert client.peers[0].persistent_keepalive is None
    assert path.read_text().count("# wgpy: Endpoint") == 1
    # a new endpoint replaces the remembered one in place
    add_peer(request(path, "three", endpoint="[2001:db8::1]:443"), FakeControl(None))
    text = path.read_text()
    assert text.count("# wgpy: Endpoint") == 1
    assert "# wgpy: Endpoint = [2001:db8::1]:443" in text


def test_explicit_address(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    result = add_peer(request(path, address="10.8.0.77/24"), FakeControl(None))
    assert [str(a) for a in result.addresses] == ["10.8.0.77/24"]
    assert "AllowedIPs = 10.8.0.77/32" in path.read_text()
    before = path.read_text()
    with pytest.raises(OpsError, match="already in use"):
        add_peer(request(path, "other", address="10.8.0.2"), FakeControl(None))
    assert path.read_text() == before


def _assert_refused(path: Path, control: FakeControl, req: AddPeerRequest, match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(OpsError, match=match):
        add_peer(req, control)  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert control.requests == []


def test_refuses_duplicate_name_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    add_peer(request(path, "Phone"), FakeControl(None))
    _assert_refused(path, FakeControl(DeviceState(private_key=SERVER_PRIVATE)),
                    request(path, "phone "), "already in")


def test_refuses_full_subnet(tmp_path: Path) -> None:
    path = write(tmp_path, server_text(address="10.8.0.1/30"))  # .1 server, .2 alice
    _assert_refused(path, FakeControl(None), request(path), "10.8.0.0/30 is full")


def test_refuses_unparsable_config(tmp_path: Path) -> None:
    path = write(tmp_path, server_text(extra="Endpoint = nowhere\n"))
    _assert_refused(path, FakeControl(None), request(path), r"wg0.conf:12: Endpoint")


def test_refuses_without_endpoint(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    _assert_refused(path, FakeControl(None), request(path, endpoint=None), "no endpoint")


def test_refuses_bad_name(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    _assert_refused(path, FakeControl(None), request(path, "two\nlines"), "control characters")


def test_failed_live_change_restores_config(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    before = path.read_bytes()
    control = FakeControl(DeviceState(private_key=SERVER_PRIVATE), fail_set=True)
    with pytest.raises(OpsError, match="could not change the running interface"):
        add_peer(request(path), control)  # type: ignore[arg-type]
    assert path.read_bytes() == before


# -- remove-peer ----------------------------------------------------------------------------------


def test_remove_by_name_restores_the_original_text(tmp_path: Path) -> None:
    original = server_text(extra="\n# bob\n[Peer]\nPublicKey = "
                           f"{keys.key_to_base64(keys.public_key(keys.generate_private_key()))}\n"
                           "AllowedIPs = 10.8.0.9/32\n")
    # start from a file that already remembers an endpoint, so add-peer only appends
    with_endpoint = original.replace("[Interface]\n", "[Interface]\n# wgpy: Endpoint = h:1\n")
    path = write(tmp_path, with_endpoint)
    result = add_peer(request(path, endpoint=None), FakeControl(None))
    control = FakeControl(DeviceState(peers=[PeerState(public_key=result.public_key)]))
    removed = remove_peer("wg0", "PHONE", path, control)  # type: ignore[arg-type]
    assert removed.in_config and removed.live and removed.name == "phone"
    assert path.read_text() == with_endpoint
    (req,) = control.requests
    assert req.peers[0].public_key == result.public_key and req.peers[0].remove


def test_remove_by_key_in_the_middle_keeps_neighbours(tmp_path: Path) -> None:
    bob = keys.public_key(keys.generate_private_key())
    text = server_text(extra=f"\n# bob\n[Peer]\nPublicKey = {keys.key_to_base64(bob)}\n"
                             "AllowedIPs = 10.8.0.9/32\n")
    path = write(tmp_path, text)
    remove_peer("wg0", keys.key_to_base64(ALICE), path, FakeControl(None))  # type: ignore[arg-type]
    config = parse_config(path.read_text())
    assert [p.public_key for p in config.peers] == [bob]
    assert "# alice's laptop" not in path.read_text()
    assert "# bob\n[Peer]" in path.read_text()
    assert path.read_text().startswith("# main VPN\n[Interface]\n")


def test_remove_live_only_peer_by_key(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    before = path.read_text()
    stray = keys.public_key(keys.generate_private_key())
    control = FakeControl(DeviceState(peers=[PeerState(public_key=stray)]))
    result = remove_peer("wg0", keys.key_to_base64(stray), path, control)  # type: ignore[arg-type]
    assert result.live and not result.in_config
    assert path.read_text() == before
    assert control.requests[0].peers[0].remove


def test_remove_unknown_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    with pytest.raises(OpsError, match="no peer 'nobody'"):
        remove_peer("wg0", "nobody", path, FakeControl(None))  # type: ignore[arg-type]


# -- the command ----------------------------------------------------------------------------------


def test_command_writes_out_file_0600_and_reports(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, server_text())
    monkeypatch.setattr(commands, "control_factory", lambda: FakeControl(None))
    out = tmp_path / "phone.conf"
    status = commands.main(["add-peer", "wg0", "--name", "phone", "--config", str(path),
                            "--endpoint", "vpn.example.com:51820", "--dns", "1.1.1.1,9.9.9.9",
                            "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out == ""
    assert "added peer 'phone' (10.8.0.3/32, fd08::3/128" in captured.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert parse_config(out.read_text()).interface.dns_servers == ["1.1.1.1", "9.9.9.9"]

    status = commands.main(["add-peer", "wg0", "--name", "phone", "--config", str(path)])
    assert status == 1
    assert "already in" in capsys.readouterr().err

    status = commands.main(["remove-peer", "wg0", "phone", "--config", str(path)])
    assert status == 0
    assert "removed peer 'phone' from the config" in capsys.readouterr().err


def test_concurrent_add_peers_get_distinct_addresses(tmp_path: Path) -> None:
    import threading

    path = write(tmp_path, server_text())
    results: list[str] = []
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            result = add_peer(request(path, f"peer{index}"), FakeControl(None))
            results.append(str(result.addresses[0]))
        except BaseException as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 6
    assert len(parse_config(path.read_text()).peers) == 7


# -- input checked before anything is written -----------------------------------------------------


@pytest.mark.parametrize("endpoint", [
    "not a host", "not a host:51820", "vpn.example.com:51820\nPostUp = touch /tmp/owned",
    "vpn.example.com:0", "vpn.example.com:65536", "vpn.example.com:http", "2001:db8::1:51820x",
    "[192.0.2.1]:51820", "[2001:db8::1", "192.0.2.300:51820", "-bad-.example:1", "a_b.example:1",
])
def test_refuses_bad_endpoint(tmp_path: Path, endpoint: str) -> None:
    path = write(tmp_path, server_text())
    _assert_refused(path, FakeControl(DeviceState(private_key=SERVER_PRIVATE)),
                    request(path, endpoint=endpoint), "--endpoint: endpoint: ")


@pytest.mark.parametrize(("given", "written"), [
    ("vpn.example.com:51820", "vpn.example.com:51820"), ("vpn.example.com", "vpn.example.com:51820"),
    ("192.0.2.1:1", "192.0.2.1:1"), ("[2001:db8::1]:443", "[2001:db8::1]:443"),
    ("2001:db8::1", "[2001:db8::1]:51820"), ("[2001:db8::1]", "[2001:db8::1]:51820"),
])
def test_accepted_endpoints(tmp_path: Path, given: str, written: str) -> None:
    path = write(tmp_path, server_text())
    result = add_peer(request(path, endpoint=given), FakeControl(None))
    assert parse_config(result.client_config).peers[0].endpoint == written


def test_a_bad_remembered_endpoint_is_refused_with_where_it_is(tmp_path: Path) -> None:
    path = write(tmp_path, server_text().replace(
        "ListenPort", "# wgpy: Endpoint = not a host\nListenPort"))
    _assert_refused(path, FakeControl(None), request(path, endpoint=None),
                    r"wg0.conf: '# wgpy: Endpoint': endpoint: not a host name")


def test_refuses_dns_that_is_not_an_address(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    _assert_refused(path, FakeControl(None), request(path, dns=["1.1.1.1", "corp.example"]),
                    "--dns: not an IP address: 'corp.example'")


@pytest.mark.parametrize("name", ["two\nlines", "esc\x1b[31m", "line\u2028separator", "ne\x85l"])
def test_refuses_unprintable_names(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, server_text())
    _assert_refused(path, FakeControl(None), request(path, name), "--name: .*printable")


def test_address_outside_the_subnets_needs_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, server_text())
    _assert_refused(path, FakeControl(None), request(path, address="10.99.0.5"),
                    r"outside the interface's subnets \(10.8.0.0/24, fd08::/64\)")
    result = add_peer(request(path, address="10.99.0.5", allow_outside_subnet=True),
                      FakeControl(None))
    assert [str(a) for a in result.addresses] == ["10.99.0.5/32"]
    assert "AllowedIPs = 10.99.0.5/32" in path.read_text()


def test_no_control_character_reaches_a_config_file(tmp_path: Path) -> None:
    from wgpy.conf import ConfigError, write_config_file

    target = tmp_path / "wg0.conf"
    for text in ("[Peer]\nEndpoint = a\x1b:1\n", "[Interface]\nPostUp = a\rb\n", "x\x00\n"):
        with pytest.raises(ConfigError, match="wg0.conf:2: .*control character|wg0.conf:1: "):
            write_config_file(target, text)
        assert not target.exists()
        assert list(tmp_path.iterdir()) == []
    write_config_file(target, "[Interface]\r\n\tListenPort = 1\r\n")  # CRLF and tabs are fine


def _add_with_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    path = tmp_path / "wg0.conf"
    if not path.exists():
        write(tmp_path, server_text())
    monkeypatch.setattr(commands, "control_factory", lambda: FakeControl(None))
    return commands.main(["add-peer", "wg0", "--name", f"p{len(list(tmp_path.iterdir()))}",
                          "--config", str(path), "--endpoint", "vpn.example.com:51820", *extra])


def test_out_files_never_follow_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    out, png = tmp_path / "client.conf", tmp_path / "client.png"
    out.symlink_to(target)
    png.symlink_to(target)
    assert _add_with_out(tmp_path, monkeypatch, "--out", str(out), "--qr-png", str(png)) == 0
    assert target.read_text() == "keep me\n"
    for path in (out, png):
        assert not path.is_symlink() and stat.S_IMODE(path.lstat().st_mode) == 0o600
    assert "PrivateKey" in out.read_text()


@pytest.mark.e2e  # root: chown to another user (tests/conftest.py)
def test_out_file_owned_by_someone_else_is_replaced(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    out = tmp_path / "client.conf"
    out.write_text("")
    out.chmod(0o644)
    os.chown(out, 65534, 65534)
    assert _add_with_out(tmp_path, monkeypatch, "--out", str(out)) == 0
    info = out.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    assert "PrivateKey" in out.read_text()


def test_unwritable_out_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, server_text())
    before = path.read_bytes()
    missing = tmp_path / "no-such-dir" / "client.conf"
    assert _add_with_out(tmp_path, monkeypatch, "--out", str(missing)) == 1
    assert f"--out {missing}: No such file or directory" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wg0.conf"]


def test_out_files_are_removed_when_the_live_change_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, server_text())
    before = path.read_bytes()
    monkeypatch.setattr(commands, "control_factory", lambda: FakeControl(
        DeviceState(private_key=SERVER_PRIVATE), fail_set=True))
    out, png = tmp_path / "client.conf", tmp_path / "client.png"
    status = commands.main(["add-peer", "wg0", "--name", "phone", "--config", str(path),
                            "--endpoint", "vpn.example.com:51820", "--out", str(out),
                            "--qr-png", str(png)])
    assert status == 1
    assert "could not change the running interface" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert not out.exists() and not png.exists()


def test_add_peer_without_root_says_so_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, server_text())
    before = path.read_bytes()
    control = FakeControl(DeviceState(private_key=SERVER_PRIVATE))
    monkeypatch.setattr(commands, "control_factory", lambda: control)
    monkeypatch.setattr(commands, "running_as_root", lambda: False)
    out = tmp_path / "client.conf"
    status = commands.main(["add-peer", "wg0", "--name", "phone", "--config", str(path),
                            "--endpoint", "vpn.example.com:51820", "--out", str(out)])
    assert status == 1
    assert "needs root" in capsys.readouterr().err
    assert path.read_bytes() == before and not out.exists() and control.requests == []
