"""Hypothesis fuzz of the config parser: only ConfigError escapes, and round trips hold."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy.conf import ConfigError, format_config, parse_config
from wgpy.keys import key_to_base64

KEYWORDS = [
    "[Interface]", "[Peer]", "PrivateKey", "PublicKey", "PresharedKey", "ListenPort", "FwMark",
    "AllowedIPs", "Endpoint", "PersistentKeepalive", "Address", "DNS", "MTU", "Table", "PostUp",
    "SaveConfig", "=", "#", ",", "/", ":", "[", "]", " ", "\t", "\r", "off", "0x", "10.0.0.1",
    "fd00::1", "/24", "/129", "51820", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
]
fragments = st.one_of(st.sampled_from(KEYWORDS), st.text(max_size=4))
lines = st.lists(fragments, max_size=6).map("".join)
documents = st.lists(lines, max_size=12).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(documents, st.booleans())
def test_parser_raises_only_config_error(text: str, quick: bool) -> None:
    try:
        cfg = parse_config(text, "fuzz.conf", quick=quick)
    except ConfigError as err:
        assert str(err).startswith("fuzz.conf:")
        assert 1 <= err.line <= max(1, text.count("\n") + 1)
        return
    # whatever parsed writes back unchanged
    assert format_config(cfg) == text + ("\n" if text and not text.endswith("\n") else "")


keys = st.binary(min_size=32, max_size=32)
v4nets = st.builds(
    lambda a, p: ipaddress.ip_network((a, p), strict=False),
    st.integers(0, 2**32 - 1), st.integers(0, 32),
)


@settings(max_examples=100, deadline=None)
@given(keys, st.lists(st.tuples(keys, st.lists(v4nets, max_size=3), st.integers(0, 65535)),
                      max_size=4), st.integers(0, 65535))
def test_generated_configs_parse_back(private, peers, port) -> None:
    text = f"[Interface]\nPrivateKey = {key_to_base64(private)}\nListenPort = {port}\n"
    for public, nets, keepalive in peers:
        text += f"\n[Peer]\nPublicKey = {key_to_base64(public)}\nPersistentKeepalive = {keepalive}\n"
        if nets:
            text += "AllowedIPs = " + ", ".join(str(n) for n in nets) + "\n"
    cfg = parse_config(text, quick=False)
    assert cfg.interface.private_key == private and cfg.interface.listen_port == port
    assert [(p.public_key, p.allowed_ips, p.persistent_keepalive) for p in cfg.peers] == [
        (pub, nets, ka) for pub, nets, ka in peers
    ]
    # an edited copy still parses to the edited values
    for p in cfg.peers:
        p.persistent_keepalive = None
    edited = parse_config(format_config(cfg), quick=False)
    assert all(p.persistent_keepalive is None for p in edited.peers)
