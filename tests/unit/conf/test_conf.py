"""The wg / wg-quick config parser: every key, comments, whitespace, repeats, errors with lines."""

from __future__ import annotations

import ipaddress

import pytest

from wgpy.conf import ConfigError, format_config, parse_config, strip_config
from wgpy.keys import key_from_base64

PRIV = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
PUB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
PUB2 = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
PSK = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="


def parse_err(text: str, quick: bool = True) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.conf", quick=quick)
    return info.value


def test_every_wg_key() -> None:
    cfg = parse_config(
        f"[Interface]\nPrivateKey = {PRIV}\nListenPort = 51820\nFwMark = 0x10\n\n"
        f"[Peer]\nPublicKey = {PUB}\nPresharedKey = {PSK}\nAllowedIPs = 10.0.0.0/8, fd00::/64\n"
        "Endpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n",
        quick=False,
    )
    assert cfg.interface.private_key == key_from_base64(PRIV)
    assert cfg.interface.listen_port == 51820
    assert cfg.interface.fwmark == 16
    assert cfg.interface.line == 1
    (peer,) = cfg.peers
    assert peer.public_key == key_from_base64(PUB)
    assert peer.preshared_key == key_from_base64(PSK)
    assert peer.allowed_ips == [
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/64")
    ]
    assert peer.endpoint == "192.0.2.1:51820"
    assert peer.persistent_keepalive == 25
    assert peer.line == 6


def test_every_quick_key() -> None:
    cfg = parse_config(
        "[Interface]\nAddress = 10.0.0.1/24,fd00::1/64\nAddress = 10.1.0.1/24\n"
        "DNS = 1.1.1.1, fd00::53, corp.example\nDNS = 9.9.9.9\nMTU = 1420\nTable = off\n"
        "PreUp = echo pre up\nPostUp = iptables -A x # a comment\nPostUp = second\n"
        "PreDown = pd\nPostDown = pod\nSaveConfig = true\n"
    )
    i = cfg.interface
    assert [str(a) for a in i.addresses] == ["10.0.0.1/24", "fd00::1/64", "10.1.0.1/24"]
    assert i.dns_servers == ["1.1.1.1", "fd00::53", "9.9.9.9"]
    assert i.dns_search == ["corp.example"]
    assert i.mtu == 1420 and i.table == "off"
    assert i.pre_up == ["echo pre up"]
    assert i.post_up == ["iptables -A x", "second"]
    assert i.pre_down == ["pd"] and i.post_down == ["pod"]
    assert i.save_config is True


def test_case_whitespace_comments_like_wg() -> None:
    cfg = parse_config(
        f"  [ interface ]  # c\n\tprivate key\t= {PRIV[:10]} {PRIV[10:]}  # trailing\n"
        f"#[Peer]\n[PEER]\npublickey={PUB}\r\nallowedips = 10.0.0.1 , 10.0.0.2/32\n",
        quick=False,
    )
    assert cfg.interface.private_key == key_from_base64(PRIV)
    assert len(cfg.peers) == 1
    assert [str(n) for n in cfg.peers[0].allowed_ips] == ["10.0.0.1/32", "10.0.0.2/32"]


def test_repeated_keys() -> None:
    cfg = parse_config(
        f"[Interface]\nListenPort=1\nListenPort=2\n[Peer]\nPublicKey={PUB}\n"
        "AllowedIPs=10.0.0.0/24\nAllowedIPs=10.0.1.0/24\nPersistentKeepalive=5\n"
        f"PersistentKeepalive=off\n[Peer]\nPublicKey={PUB2}\n",
        quick=False,
    )
    assert cfg.interface.listen_port == 2
    assert [str(n) for n in cfg.peers[0].allowed_ips] == ["10.0.0.0/24", "10.0.1.0/24"]
    assert cfg.peers[0].persistent_keepalive == 0
    assert [p.public_key for p in cfg.peers] == [key_from_base64(PUB), key_from_base64(PUB2)]


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("[Interface]\n\nPrivateKey = abc\n", 3, "PrivateKey",
         "Key is not the correct length or format: `abc'"),
        # last symbol carries non-zero padding bits: wg rejects it, Python's decoder would not
        (f"[Interface]\nPrivateKey = {PRIV[:-2]}n=\n", 2, "PrivateKey",
         f"Key is not the correct length or format: `{PRIV[:-2]}n='"),
        ("[Interface]\nListenPort = abc\n", 2, "ListenPort",
         "Servname not supported for ai_socktype: `abc'"),
        ("[Interface]\nFwMark = 0x1ffffffff\n", 2, "FwMark",
         "Fwmark is neither 0/off nor 0-0xffffffff: `0x1ffffffff'"),
        ("[Interface]\nFwMark = -1\n", 2, "FwMark",
         "Fwmark is neither 0/off nor 0-0xffffffff: `-1'"),
        ("[Interface]\nFwMark = 0X10\n", 2, "FwMark",
         "Fwmark is neither 0/off nor 0-0xffffffff: `0X10'"),
        (f"[Peer]\nPublicKey={PUB}\nPersistentKeepalive = 65536\n", 3, "PersistentKeepalive",
         "Persistent keepalive interval is neither 0/off nor 1-65535: `65536'"),
        (f"[Peer]\nPublicKey={PUB}\nAllowedIPs = 10.0.0.0/33\n", 3, "AllowedIPs",
         "AllowedIP is not in the correct format: `10.0.0.0/33'"),
        (f"[Peer]\nPublicKey={PUB}\nAllowedIPs = 10.0.0.0/8,\n", 3, "AllowedIPs",
         "Unable to parse IP address: `'"),
        (f"[Peer]\nPublicKey={PUB}\nAllowedIPs = 10.0.0/8\n", 3, "AllowedIPs",
         "Unable to parse IP address: `10.0.0'"),
        (f"[Peer]\nPublicKey={PUB}\nAllowedIPs = fd00::/129\n", 3, "AllowedIPs",
         "AllowedIP is not in the correct format: `fd00::/129'"),
        (f"[Peer]\nPublicKey={PUB}\nAllowedIPs = 10.0.0.0/+8\n", 3, "AllowedIPs",
         "AllowedIP is not in the correct format: `10.0.0.0/+8'"),
        (f"[Peer]\nPublicKey={PUB}\nEndpoint = 192.0.2.1\n", 3, "Endpoint",
         "Unable to find port of endpoint: `192.0.2.1'"),
        (f"[Peer]\nPublicKey={PUB}\nEndpoint = [fd00::1:51820\n", 3, "Endpoint",
         "Unable to find matching brace of endpoint: `[fd00::1:51820'"),
        (f"[Peer]\nPublicKey={PUB}\nEndpoint = [fd00::1]51820\n", 3, "Endpoint",
         "Unable to find port of endpoint: `[fd00::1]51820'"),
        ("ListenPort = 1\n", 1, "ListenPort", "Line unrecognized: `ListenPort=1'"),
        ("[Interface]\nListenPort =\n", 2, "ListenPort", "Line unrecognized: `ListenPort='"),
        ("[Interface]\nBogus = 1\n", 2, "Bogus", "Line unrecognized: `Bogus=1'"),
        ("[Interface]\nPublicKey = x\n", 2, "PublicKey", "Line unrecognized: `PublicKey=x'"),
        (f"[Peer]\nPublicKey={PUB}\nListenPort = 1\n", 3, "ListenPort",
         "Line unrecognized: `ListenPort=1'"),
        ("[Interface]\n[Peer]\nAllowedIPs = 10.0.0.0/8\n", 2, "PublicKey",
         "A peer is missing a public key"),
        ("[Interface]\nSaveConfig = yes\n", 2, "SaveConfig", "`yes' is neither true nor false"),
        ("[Interface]\nAddress = 10.0.0.300/24\n", 2, "Address",
         "Unable to parse address: `10.0.0.300/24'"),
    ],
)
def test_errors_name_file_line_and_key(text: str, line: int, key: str, message: str) -> None:
    err = parse_err(text)
    assert (err.path, err.line, err.key, err.message) == ("t.conf", line, key, message)
    assert str(err) == f"t.conf:{line}: {key}: {message}"


def test_quick_keys_are_errors_for_wg() -> None:
    err = parse_err("[Interface]\n# c\nAddress = 10.0.0.1/24 # x\n", quick=False)
    assert (err.line, err.key, err.message) == (3, "Address", "Line unrecognized: `Address=10.0.0.1/24'")
    # and wg-quick keys are never accepted in a peer section
    err = parse_err(f"[Peer]\nPublicKey={PUB}\nDNS=1.1.1.1\n")
    assert err.message == "Line unrecognized: `DNS=1.1.1.1'"


def test_values_accepted_like_wg() -> None:
    cfg = parse_config(
        "[Interface]\nListenPort = 65536\nFwMark = off\n[Peer]\n"
        f"PublicKey={PUB}\nPersistentKeepalive = 0\nEndpoint = host.example:51820\n"
        "AllowedIPs = 10.0.0.1/24\n",
        quick=False,
    )
    assert cfg.interface.listen_port == 0  # glibc getaddrinfo reduces modulo 65536, as in wg
    assert cfg.interface.fwmark == 0
    assert cfg.peers[0].persistent_keepalive == 0
    assert cfg.peers[0].endpoint == "host.example:51820"
    assert [str(n) for n in cfg.peers[0].allowed_ips] == ["10.0.0.0/24"]
    assert cfg.warnings == [(8, "Warning: AllowedIP has nonzero host part: 10.0.0.1/24")]
    assert parse_config("[Interface]\nFwMark=4294967295\n").interface.fwmark == 0xFFFFFFFF


def test_endpoint_resolver_called_at_its_line() -> None:
    calls = []

    def resolve(value: str) -> tuple[str, int]:
        calls.append(value)
        raise ValueError(f"Name or service not known: `{value}'")

    with pytest.raises(ConfigError) as info:
        parse_config(f"[Peer]\nPublicKey={PUB}\nEndpoint=nope.invalid:1\nBad=1\n", "f", False, resolve)
    assert info.value.line == 3 and calls == ["nope.invalid:1"]


def test_round_trip_unchanged_is_byte_identical() -> None:
    text = (
        "# managed by hand\n\n[Interface]  # the server\nPrivateKey = " + PRIV + "\n"
        "Address = 10.0.0.1/24\n  ListenPort=51820\n\n# alice's laptop\n[Peer]\n"
        f"PublicKey = {PUB}\nAllowedIPs = 10.0.0.2/32\nAllowedIPs = 10.0.0.3/32 # phone\n"
        f"\n[Peer]\nPublicKey = {PUB2}\n# trailing\n"
    )
    assert format_config(parse_config(text)) == text


def test_writer_edits_keep_comments_and_order() -> None:
    text = (
        "[Interface]\nListenPort = 1  # port\nPrivateKey = " + PRIV + "\n\n"
        f"# alice\n[Peer]\nPublicKey = {PUB}\nAllowedIPs = 10.0.0.2/32\n# note\n"
        "AllowedIPs = 10.0.0.3/32\nPersistentKeepalive = 25\n"
    )
    cfg = parse_config(text)
    cfg.interface.listen_port = 2
    cfg.interface.fwmark = 0x20
    cfg.peers[0].allowed_ips.append(ipaddress.ip_network("10.0.0.4/32"))
    cfg.peers[0].persistent_keepalive = None
    from wgpy.conf import PeerSection

    cfg.peers.append(PeerSection(public_key=key_from_base64(PUB2), comments=["# bob"],
                                 endpoint="[fd00::1]:5"))
    out = format_config(cfg)
    assert out == (
        "[Interface]\nListenPort = 2 # port\nPrivateKey = " + PRIV + "\nFwMark = 0x20\n\n"
        f"# alice\n[Peer]\nPublicKey = {PUB}\n"
        "AllowedIPs = 10.0.0.2/32, 10.0.0.3/32, 10.0.0.4/32\n# note\n"
        f"\n# bob\n[Peer]\nPublicKey = {PUB2}\nEndpoint = [fd00::1]:5\n"
    )
    again = parse_config(out)
    assert again.interface.listen_port == 2 and again.interface.fwmark == 0x20
    assert len(again.peers[0].allowed_ips) == 3 and again.peers[1].comments == ["# bob"]


def test_strip_config_like_wg_quick() -> None:
    text = (
        "[Interface]\n  Address = 10.0.0.1/24\nPrivateKey = " + PRIV + "  \npostup = x\n"
        "Table=off\n# comment\n[Peer]\nPublicKey = " + PUB + "\nDNS = 1.1.1.1\n"
    )
    assert strip_config(text) == (
        "[Interface]\nPrivateKey = " + PRIV + "\n# comment\n[Peer]\nPublicKey = " + PUB
        + "\nDNS = 1.1.1.1\n"
    )


def test_write_config_file_is_private_and_atomic(tmp_path) -> None:
    import stat

    from wgpy.conf import write_config_file

    target = tmp_path / "wg0.conf"
    target.write_text("old")
    target.chmod(0o644)
    text = f"[Interface]\nPrivateKey = {PRIV}\n"
    write_config_file(target, text)
    assert target.read_text() == text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wg0.conf"]
