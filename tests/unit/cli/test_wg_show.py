"""Formatting of `wgpy show` / `showconf`: times, byte units, ordering, colours, fields, JSON."""

from __future__ import annotations

import ipaddress

import pytest

from wgpy import show
from wgpy.keys import key_to_base64, public_key
from wgpy.model import DeviceState, PeerState

NOW = 1_700_000_000
K = [bytes([i] * 32) for i in range(10)]


def b(i: int) -> str:
    return key_to_base64(K[i])


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


@pytest.mark.parametrize(("seconds", "text"), [
    (1, "1 second"), (2, "2 seconds"), (60, "1 minute"), (62, "1 minute, 2 seconds"),
    (3600, "1 hour"), (86400 + 1, "1 day, 1 second"),
    (365 * 86400 * 2 + 3 * 86400 + 4 * 3600 + 5 * 60 + 6,
     "2 years, 3 days, 4 hours, 5 minutes, 6 seconds"),
])
def test_pretty_time(seconds: int, text: str) -> None:
    assert show.strip_ansi(show.pretty_time(seconds)) == text


def test_pretty_time_colours_units_only() -> None:
    assert show.pretty_time(62) == "1 \x1b[36mminute\x1b[0m, 2 \x1b[36mseconds\x1b[0m"


def test_ago() -> None:
    assert show.ago(NOW, NOW) == "Now"
    assert show.strip_ansi(show.ago(NOW - 62, NOW)) == "1 minute, 2 seconds ago"
    assert show.strip_ansi(show.ago(NOW + 1, NOW)) == (
        "(System clock wound backward; connection problems may ensue.)")


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
    (int(1.23 * 1024 * 1024), "1.23 MiB"), (1024**2 - 1, "1024.00 KiB"),
    (5 * 1024**3, "5.00 GiB"), (3 * 1024**4, "3.00 TiB"), (2**64 - 1, "16777216.00 TiB"),
    (1024 * 1024 * 1024 * 1023 + 1024**3 // 2, "1023.50 GiB"),
])
def test_human_bytes(count: int, text: str) -> None:
    assert show.strip_ansi(show.human_bytes(count)) == text


def test_sorted_peers_latest_first_never_last_stable() -> None:
    peers = [
        PeerState(public_key=K[0]),
        PeerState(public_key=K[1], last_handshake_sec=NOW - 10),
        PeerState(public_key=K[2]),
        PeerState(public_key=K[3], last_handshake_sec=NOW - 5, last_handshake_nsec=1),
        PeerState(public_key=K[4], last_handshake_sec=NOW - 5, last_handshake_nsec=2),
        PeerState(public_key=K[5], last_handshake_sec=NOW - 10),
        PeerState(public_key=K[6], last_handshake_nsec=3),  # sec 0 but nsec set: not "never"
    ]
    order = [p.public_key[0] for p in show.sorted_peers(peers)]
    assert order == [4, 3, 1, 5, 6, 0, 2]


def test_inet_ntop_spellings() -> None:
    assert show.format_endpoint(("::ffff:192.0.2.1", 5)) == "[::ffff:192.0.2.1]:5"
    assert show.format_endpoint(("192.0.2.1", 51820)) == "192.0.2.1:51820"
    assert show.format_endpoint(("fe80::1%eth0", 5)) == "[fe80::1%eth0]:5"
    assert show.format_allowed_ip(net("::1.2.3.4/128")) == ("::1.2.3.4", 128)
    assert show.format_allowed_ip(net("::ffff:0:0/96")) == ("::ffff:0.0.0.0", 96)
    assert show.format_allowed_ip(net("fd00:0:0:1::/64")) == ("fd00:0:0:1::", 64)


def device() -> DeviceState:
    return DeviceState(
        private_key=K[1], listen_port=51820, fwmark=0xAB,
        peers=[
            PeerState(public_key=K[2]),
            PeerState(public_key=K[3], preshared_key=K[4], endpoint=("192.0.2.1", 7),
                      allowed_ips=[net("10.0.0.0/24"), net("fd00::/64")],
                      last_handshake_sec=NOW - 62, rx_bytes=1536, tx_bytes=0,
                      persistent_keepalive=25),
        ],
    )


def test_pretty_exact_text() -> None:
    text = show.pretty("wg0", device(), show.ShowOptions(now=NOW))
    assert text == (
        "interface: wg0\n"
        f"  public key: {key_to_base64(public_key(K[1]))}\n"
        "  private key: (hidden)\n"
        "  listening port: 51820\n"
        "  fwmark: 0xab\n"
        "\n"
        f"peer: {b(3)}\n"
        "  preshared key: (hidden)\n"
        "  endpoint: 192.0.2.1:7\n"
        "  allowed ips: 10.0.0.0/24, fd00::/64\n"
        "  latest handshake: 1 minute, 2 seconds ago\n"
        "  transfer: 1.50 KiB received, 0 B sent\n"
        "  persistent keepalive: every 25 seconds\n"
        "\n"
        f"peer: {b(2)}\n"
        "  allowed ips: (none)\n"
    )
    shown = show.pretty("wg0", device(), show.ShowOptions(now=NOW, show_keys=True))
    assert f"private key: {b(1)}" in shown and f"preshared key: {b(4)}" in shown


def test_pretty_colours() -> None:
    text = show.pretty("wg0", DeviceState(), show.ShowOptions(now=NOW, color=True))
    assert text == "\x1b[0m\x1b[32m\x1b[1minterface\x1b[0m: \x1b[32mwg0\x1b[0m\n"
    assert show.pretty("wg0", DeviceState(), show.ShowOptions(now=NOW)) == "interface: wg0\n"


def test_dump_and_fields() -> None:
    state = device()
    pub = key_to_base64(public_key(K[1]))
    assert show.dump(None, state) == (
        f"{b(1)}\t{pub}\t51820\t0xab\n"
        f"{b(2)}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
        f"{b(3)}\t{b(4)}\t192.0.2.1:7\t10.0.0.0/24,fd00::/64\t{NOW - 62}\t1536\t0\t25\n"
    )
    assert show.dump("wg0", DeviceState()) == "wg0\t(none)\t(none)\t0\toff\n"
    assert show.field(None, state, "allowed-ips") == (
        f"{b(2)}\t(none)\n{b(3)}\t10.0.0.0/24 fd00::/64\n")
    assert show.field("wg0", state, "endpoints") == (
        f"wg0\t{b(2)}\t(none)\n{b(3)}\t192.0.2.1:7\n")  # wg v1.0.20210914's layout
    assert show.field("wg0", state, "transfer") == (
        f"wg0\t{b(2)}\t0\t0\nwg0\t{b(3)}\t1536\t0\n")
    assert show.field(None, state, "persistent-keepalive") == f"{b(2)}\toff\n{b(3)}\t25\n"
    assert show.field(None, state, "preshared-keys") == f"{b(2)}\t(none)\n{b(3)}\t{b(4)}\n"
    assert show.field(None, state, "fwmark") == "0xab\n"
    assert show.field(None, DeviceState(), "fwmark") == "off\n"
    assert show.field(None, DeviceState(), "private-key") == "(none)\n"
    assert show.field(None, state, "latest-handshakes") == f"{b(2)}\t0\n{b(3)}\t{NOW - 62}\n"
    assert show.field(None, state, "nonsense") is None


def test_showconf() -> None:
    assert show.showconf(device()) == (
        f"[Interface]\nListenPort = 51820\nFwMark = 0xab\nPrivateKey = {b(1)}\n\n"
        f"[Peer]\nPublicKey = {b(2)}\n\n"
        f"[Peer]\nPublicKey = {b(3)}\nPresharedKey = {b(4)}\n"
        "AllowedIPs = 10.0.0.0/24, fd00::/64\nEndpoint = 192.0.2.1:7\nPersistentKeepalive = 25\n"
    )
    assert show.showconf(DeviceState()) == "[Interface]\n\n"


def test_json_hides_keys_unless_asked() -> None:
    document = show.to_json("wg0", device(), show_keys=False)
    assert document["private_key"] == "(hidden)"
    assert document["public_key"] == key_to_base64(public_key(K[1]))
    assert [p["public_key"] for p in document["peers"]] == [b(3), b(2)]
    first = document["peers"][0]
    assert first == {
        "public_key": b(3), "preshared_key": "(hidden)", "endpoint": "192.0.2.1:7",
        "allowed_ips": ["10.0.0.0/24", "fd00::/64"], "latest_handshake": NOW - 62,
        "latest_handshake_nsec": 0, "rx_bytes": 1536, "tx_bytes": 0,
        "persistent_keepalive": 25, "protocol_version": 1,
    }
    assert document["peers"][1]["preshared_key"] is None
    shown = show.to_json("wg0", device(), show_keys=True)
    assert shown["private_key"] == b(1) and shown["peers"][0]["preshared_key"] == b(4)
    assert show.to_json("x", DeviceState(), False) == {
        "name": "x", "public_key": None, "private_key": None, "listen_port": 0,
        "fwmark": None, "peers": []}
