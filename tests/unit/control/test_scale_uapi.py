"""The fast paths of a 10,000-peer `wg setconf` / `wg show`: allowed-ip parsing and network
formatting give exactly what the plain ipaddress calls give."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from wgpy.control.uapi import UapiError, _parse_allowed_ip, format_network, parse_set

# IPv6 values rich in zero and all-ones groups (where RFC 5952 compression and the embedded
# IPv4 forms differ between formatters)
groups = st.sampled_from([0, 0, 1, 0xFFFF, 0x0102, 0xFFFE]) | st.integers(0, 0xFFFF)
v6_values = st.lists(groups, min_size=8, max_size=8).map(
    lambda gs: sum(g << (16 * (7 - i)) for i, g in enumerate(gs)))


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_ipv4_network_formats_as_str(value: int, length: int) -> None:
    network = ipaddress.IPv4Network((value, length), strict=False)
    assert format_network(network) == str(network)


@given(v6_values, st.integers(0, 128))
def test_ipv6_network_formats_as_str(value: int, length: int) -> None:
    network = ipaddress.IPv6Network((value, length), strict=False)
    assert format_network(network) == str(network)


def test_embedded_ipv4_keeps_the_ipaddress_spelling() -> None:
    for text in ("::ffff:1.2.3.4/128", "::1.2.3.4/128", "::/0", "::1/128", "::ffff:0:0/96"):
        network = ipaddress.ip_network(text)
        assert format_network(network) == str(network)


@given(st.text(alphabet="0123456789abcdef:./%", max_size=20))
def test_allowed_ip_parsing_matches_ip_network(text: str) -> None:
    bits_text = text.partition("/")[2]
    try:
        expected: object = ipaddress.ip_network(text, strict=False)
        valid = ("%" not in text and "/" in text and bits_text.isdigit()
                 and not (len(bits_text) > 1 and bits_text[0] == "0"))
    except ValueError:
        valid = False
    if not valid:
        try:
            _parse_allowed_ip(text)
        except UapiError:
            return
        # ip_network refuses some spellings netip accepts (none known); say which
        raise AssertionError(f"accepted {text!r}")
    assert _parse_allowed_ip(text) == expected


def test_many_peers_parse() -> None:
    lines = [f"public_key={i:064x}\nallowed_ip=10.{i >> 8}.{i & 255}.1/32\n"
             f"allowed_ip=fd00::{i:x}/128" for i in range(1, 2001)]
    request = parse_set("set=1\n" + "\n".join(lines) + "\n\n")
    assert len(request.peers) == 2000
    assert [str(n) for n in request.peers[-1].allowed_ips] == ["10.7.208.1/32", "fd00::7d0/128"]
