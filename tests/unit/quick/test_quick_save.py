"""`wgpy-quick save` merges the running state into the file (quick/save.py): what still runs
keeps its bytes, changes are made in place, runtime peers appended, gone peers deleted."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy.conf import parse_config
from wgpy.keys import key_to_base64
from wgpy.model import DeviceState, PeerState
from wgpy.quick.save import Running, merged_text

K = [bytes([n]) * 32 for n in range(1, 8)]


def b64(n: int) -> str:
    return key_to_base64(K[n])


def running_from(text: str) -> Running:
    """The running state `up` makes from text, unchanged since."""
    config = parse_config(text, "wg0.conf")
    interface = config.interface
    peers = []
    for peer in config.peers:
        endpoint = None
        if peer.endpoint is not None:
            host, _, port = peer.endpoint.rpartition(":")
            endpoint = (host.strip("[]"), int(port))
        peers.append(PeerState(
            public_key=peer.public_key, preshared_key=peer.preshared_key or bytes(32),
            endpoint=endpoint, persistent_keepalive=peer.persistent_keepalive or 0,
            allowed_ips=list(reversed(peer.allowed_ips)),  # the device's order is its own
        ))
    device = DeviceState(private_key=interface.private_key,
                         listen_port=interface.listen_port or 0,
                         fwmark=interface.fwmark or 0, peers=peers)
    return Running(device, list(interface.addresses),
                   list(interface.dns_servers) if interface.dns_servers else None,
                   interface.mtu)


def merge(text: str, running: Running) -> str:
    config = parse_config(text, "wg0.conf")
    return merged_text(text, config, running)


SERVER = (
    "# wg0: the office server\n"
    "\n"
    "[Interface]\n"
    f"PrivateKey = {b64(0)}\n"
    "ListenPort = 51820   # opened in the firewall\n"
    "Address = 10.9.0.1/24\n"
    "Address = fd09::1/64\n"
    "# wgpy: Endpoint = vpn.example.com:51820\n"
    "PostUp = iptables -A FORWARD -i %i -j ACCEPT && echo up & wait\n"
    "PostDown = iptables -D FORWARD -i %i -j ACCEPT&&true\n"
    "SaveConfig = true\n"
    "\n"
    "[Peer]\n"
    "# friendly_name = alice\n"
    f"PublicKey = {b64(1)}\n"
    "AllowedIPs = 10.9.0.2/32,fd09::2/128\n"
    "\n"
    "# bob's phone\n"
    "[Peer]\n"
    "# friendly_name = bob\n"
    f"PublicKey = {b64(2)}\n"
    f"PresharedKey = {b64(3)}\n"
    "AllowedIPs = 10.9.0.3/32\n"
    "Endpoint = gw.example.net:4500\n"
    "\n"
    "# disabled by wgpy: carol\n"
    "#[Peer]\n"
    f"#PublicKey = {b64(4)}\n"
    "#AllowedIPs = 10.9.0.4/32\n"
    "\n"
    "[Peer]\n"
    "# friendly_name = dave\n"
    f"PublicKey = {b64(5)}\n"
    "AllowedIPs = 10.9.0.5/32\n"
    "PersistentKeepalive = 25\n"
)


def test_unchanged_state_gives_the_same_bytes() -> None:
    assert merge(SERVER, running_from(SERVER)) == SERVER


def test_a_host_name_endpoint_stays_while_its_port_matches() -> None:
    running = running_from(SERVER)
    running.device.peers[1].endpoint = ("203.0.113.7", 4500)  # what gw.example.net resolved to
    assert merge(SERVER, running) == SERVER
    running.device.peers[1].endpoint = ("203.0.113.7", 4501)
    assert "Endpoint = 203.0.113.7:4501\n" in merge(SERVER, running)


def test_changes_in_place_runtime_peers_appended_gone_peers_deleted() -> None:
    running = running_from(SERVER)
    alice, _bob, dave = running.device.peers
    alice.endpoint = ("198.51.100.9", 40000)  # roamed in
    dave.allowed_ips.append(ipaddress.ip_network("10.9.1.0/24"))
    new = PeerState(public_key=K[6], allowed_ips=[ipaddress.ip_network("10.9.0.6/32")])
    running.device.peers = [alice, dave, new]  # bob removed at runtime
    running.addresses.append(ipaddress.ip_interface("10.9.2.1/24"))
    merged = merge(SERVER, running)
    assert merged == (
        "# wg0: the office server\n"
        "\n"
        "[Interface]\n"
        f"PrivateKey = {b64(0)}\n"
        "ListenPort = 51820   # opened in the firewall\n"
        "Address = 10.9.0.1/24, fd09::1/64, 10.9.2.1/24\n"
        "# wgpy: Endpoint = vpn.example.com:51820\n"
        "PostUp = iptables -A FORWARD -i %i -j ACCEPT && echo up & wait\n"
        "PostDown = iptables -D FORWARD -i %i -j ACCEPT&&true\n"
        "SaveConfig = true\n"
        "\n"
        "[Peer]\n"
        "# friendly_name = alice\n"
        f"PublicKey = {b64(1)}\n"
        "AllowedIPs = 10.9.0.2/32,fd09::2/128\n"
        "Endpoint = 198.51.100.9:40000\n"
        "\n"
        "# disabled by wgpy: carol\n"
        "#[Peer]\n"
        f"#PublicKey = {b64(4)}\n"
        "#AllowedIPs = 10.9.0.4/32\n"
        "\n"
        "[Peer]\n"
        "# friendly_name = dave\n"
        f"PublicKey = {b64(5)}\n"
        "AllowedIPs = 10.9.0.5/32, 10.9.1.0/24\n"
        "PersistentKeepalive = 25\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {b64(6)}\n"
        "AllowedIPs = 10.9.0.6/32\n"
    )
    assert merge(merged, running) == merged  # saving again changes nothing


def test_fwmark_up_chose_for_a_default_route_is_saved_as_wg_quick_saves_it() -> None:
    """wg-quick's save writes what `wg showconf` shows, and that includes the fwmark its own
    `up` set for a default route (Table auto): `FwMark = 0xca6c`. The next `up` of the saved
    file then keeps that mark instead of picking one (both tools do)."""
    text = (f"[Interface]\nPrivateKey = {b64(0)}\nAddress = 10.0.0.2/32\n\n"
            f"[Peer]\nPublicKey = {b64(1)}\nAllowedIPs = 0.0.0.0/0\n")
    running = running_from(text)
    running.device.fwmark = 51820
    saved = merge(text, running)
    assert saved == text.replace("/32\n", "/32\nFwMark = 0xca6c\n", 1)
    assert merge(saved, running) == saved  # saving again changes nothing
    configured = text.replace("Address", "FwMark = 0x10\nAddress")
    running = running_from(configured)
    running.device.fwmark = 0x20  # `wg set fwmark` at runtime
    assert "FwMark = 0x20\n" in merge(configured, running)


# -- property: parse, merge with the state `up` made, get the same bytes ---------------------------

comments = st.sampled_from([
    "# a note", "#", "  # indented", "# friendly_name = phone", "# wgpy: Endpoint = h:1",
    "#[Peer]", f"#PublicKey = {b64(6)}", "",  "   ", "\t",
])
hooks = st.sampled_from(["echo a && echo b & wait", "true %i", "x=1;  y=2", "a|b&c"])
spacing = st.sampled_from([" = ", "=", "  =\t", " =  "])
v4 = st.builds(lambda a, p: str(ipaddress.ip_network((a, p), strict=False)),
               st.integers(0, 2**32 - 1), st.integers(8, 32))
endpoints = st.sampled_from(["192.0.2.1:51820", "[fd00::1]:5", "host.example:7", None])


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    lines: list[str] = draw(st.lists(comments, max_size=3))
    eq = draw(spacing)
    lines += ["[Interface]", f"PrivateKey{eq}{b64(0)}", f"ListenPort{eq}{draw(st.integers(1, 65535))}"]
    for key in draw(st.lists(st.sampled_from(["PreUp", "PostUp", "PostDown"]), max_size=3)):
        lines.append(f"{key}{eq}{draw(hooks)}")
    if draw(st.booleans()):
        lines.append(f"Address{eq}10.0.0.1/24, fd00::1/64")
    if draw(st.booleans()):
        lines.append(f"MTU{eq}1380")
    if draw(st.booleans()):
        lines.append(f"SaveConfig{eq}true")
    lines += draw(st.lists(comments, max_size=3))
    for n in draw(st.lists(st.integers(1, 6), unique=True, max_size=4)):
        lines += draw(st.lists(comments, max_size=2))
        lines += ["[Peer]", *draw(st.lists(comments, max_size=2)), f"PublicKey{eq}{b64(n)}"]
        nets = draw(st.lists(v4, max_size=3, unique=True))
        if nets:
            lines.append(f"AllowedIPs{eq}{', '.join(nets)}")
        endpoint = draw(endpoints)
        if endpoint:
            lines.append(f"Endpoint{eq}{endpoint}")
        if draw(st.booleans()):
            lines.append(f"PersistentKeepalive{eq}{draw(st.integers(0, 65535))}")
        lines += draw(st.lists(comments, max_size=2))
    text = "\n".join(lines)
    return text if draw(st.booleans()) else text + "\n"


@settings(max_examples=300, deadline=None)
@given(config_texts())
def test_merge_with_unchanged_state_is_byte_identical(text: str) -> None:
    assert merge(text, running_from(text)) == text


def test_a_commented_out_peer_right_above_a_removed_one_stays() -> None:
    from wgpy.conf.writer import without_peers

    text = (f"[Interface]\nPrivateKey = {b64(0)}\n\n"
            f"#[Peer]\n# PublicKey = {b64(4)}\n#AllowedIPs = 10.9.0.4/32\n"
            f"# bob\n[Peer]\nPublicKey = {b64(2)}\nAllowedIPs = 10.9.0.3/32\n")
    config = parse_config(text, "wg0.conf")
    assert without_peers(text, config.peers) == (
        f"[Interface]\nPrivateKey = {b64(0)}\n\n"
        f"#[Peer]\n# PublicKey = {b64(4)}\n#AllowedIPs = 10.9.0.4/32\n")


@pytest.mark.parametrize("text", ["", "\n", "\n\n", "# only a comment", "# a\n", "\n# a"])
def test_files_without_sections_keep_their_bytes(text: str) -> None:
    assert merged_text(text, parse_config(text, "wg0.conf"), Running(DeviceState(), [])) == text


DISABLED_ABOVE = (
    f"[Interface]\nPrivateKey = {b64(0)}\n\n"
    "#disabled# [Peer]\n#disabled# # friendly_name = carol\n"
    f"#disabled# PublicKey = {b64(4)}\n#disabled# AllowedIPs = 10.9.0.4/32\n"
    f"[Peer]\n# friendly_name = bob\nPublicKey = {b64(2)}\nAllowedIPs = 10.9.0.3/32\n"
)


def test_a_disabled_peer_stays_disabled_and_in_place() -> None:
    """disable-peer's block (conf/disabled.py) right above a peer removed at runtime stays; a
    disabled peer someone put back by hand with `wg set` is not appended as an enabled one
    (the file says disabled; syncconf would take it off again)."""
    running = running_from(DISABLED_ABOVE)
    running.device.peers = [PeerState(public_key=K[4],
                                      allowed_ips=[ipaddress.ip_network("10.9.0.4/32")])]
    assert merge(DISABLED_ABOVE, running) == (
        f"[Interface]\nPrivateKey = {b64(0)}\n\n"
        "#disabled# [Peer]\n#disabled# # friendly_name = carol\n"
        f"#disabled# PublicKey = {b64(4)}\n#disabled# AllowedIPs = 10.9.0.4/32\n"
    )
