"""The UAPI server under hostile requests, and the wgpy-only drop counters it serves.

The fuzz drives the real server code (UapiServer._process -> DeviceUapi -> parse_set ->
apply_set) on a real Device, with a socketpair as the connection and no event loop: a request
answered with a non-zero errno must leave the device's `get` answer byte-for-byte unchanged,
and no request may raise or leave the server without an answer.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import secrets
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from looplib import spinning

from wgpy.control.apply import device_state
from wgpy.control.client import DeviceControl, UapiClient
from wgpy.control.server import DeviceUapi, UapiServer, _Connection, open_uapi_socket
from wgpy.control.stats import StatsError, format_stats, parse_stats
from wgpy.control.uapi import format_get, parse_get, socket_path
from wgpy.core.device import Device
from wgpy.errors import DropReason
from wgpy.io.clock import wall_clock_of
from wgpy.io.loop import DeviceLoop
from wgpy.io.memory import MemoryNetwork, MemoryTun, MemoryUdp
from wgpy.keys import generate_private_key, public_key
from wgpy.show import to_json

NOW = 100.0


class NullLoop:
    def __init__(self) -> None:
        self.on_housekeeping: list = []

    def set_events(self, fileobj, events, callback) -> None:
        pass

    def remove(self, fileobj) -> None:
        pass


class FakeNet:
    """apply's IO side; port 1 is "in use" so that the EADDRINUSE path is fuzzed too."""

    def rebind(self, port: int) -> int:
        if port == 1:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return port or 43210

    def set_mark(self, mark: int) -> None:
        pass


def make_device() -> Device:
    device = Device(rng=secrets.token_bytes)
    device.set_private_key(generate_private_key())
    device.listen_port = 40000
    peer = device.add_peer(public_key(generate_private_key()))
    device.set_endpoint(peer, ("192.0.2.7", 51820))


    device.allowed_ips.insert(ipaddress.ip_network("10.9.0.2/32"), peer)
    return device


def serve_bytes(server: UapiServer, data: bytes) -> bytes:
    """Feed `data` as one connection's input (then EOF) through the server's request
    processing; return what it would write back."""
    ours, theirs = socket.socketpair()
    try:
        conn = _Connection(ours)
        conn.inbuf += data
        conn.eof = True
        server._process(conn)
        return bytes(conn.outbuf)
    finally:
        ours.close()
        theirs.close()


@pytest.fixture(scope="module")
def listener():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    yield sock
    sock.close()


# --- the drop counters ------------------------------------------------------------------------


def test_stats_format_and_parse_round_trip() -> None:
    drops = collections.Counter({DropReason.COOKIE_SENT: 7, DropReason.BAD_MAC1: 2,
                                 DropReason.EMPTY: 0})
    text = format_stats(drops)
    assert text == "drop_bad_mac1=2\ndrop_cookie_sent=7\nerrno=0\n\n"
    assert parse_stats(text) == ({"bad_mac1": 2, "cookie_sent": 7}, 0)
    assert parse_stats("errno=-22\n\n") == ({}, 22)
    with pytest.raises(StatsError):
        parse_stats("drop_x=1\n\n")
    with pytest.raises(StatsError):
        parse_stats("drop_x=many\nerrno=0\n\n")


def test_server_answers_stats_and_get_stays_standard(listener) -> None:
    device = make_device()
    for _ in range(3):
        device.receive_datagram(b"", ("192.0.2.9", 9), NOW)
    device.receive_datagram(b"\x09" + bytes(40), ("192.0.2.9", 9), NOW)
    server = UapiServer(listener, "", DeviceUapi(device, FakeNet(), lambda: NOW, wall_clock_of), NullLoop())
    answer = serve_bytes(server, b"wgpy_stats=1\n\n").decode()
    assert parse_stats(answer) == ({"empty": 3, "unknown_type": 1}, 0)
    # the get answer carries no wgpy key (the real wg must keep parsing it)
    get_answer = serve_bytes(server, b"get=1\n\n").decode()
    assert "drop" not in get_answer
    parse_get(get_answer)
    # several requests on one connection, stats between two gets
    both = serve_bytes(server, b"get=1\n\nwgpy_stats=1\n\nget=1\n\n").decode()
    assert both.count("errno=0\n\n") == 3 and "drop_empty=3" in both
    # a trailing character is EINVAL, as for get
    assert serve_bytes(server, b"wgpy_stats=1\nx").decode() == "errno=-22\n\n"


def test_handler_without_stats_hangs_up_like_wireguard_go(listener) -> None:
    class GetOnly:
        def handle_get(self) -> str:
            return "errno=0\n\n"

        def handle_set(self, body: str) -> int:
            return 0

    server = UapiServer(listener, "", GetOnly(), NullLoop())
    assert serve_bytes(server, b"wgpy_stats=1\n\n") == b""


def test_client_reads_drops_over_a_real_socket_and_json_shows_them(tmp_path) -> None:
    directory = str(tmp_path / "wireguard")
    name = "wgxstats0"
    device = make_device()
    device.receive_datagram(b"\x01" + bytes(147), ("192.0.2.9", 9), NOW)  # bad mac1
    loop = DeviceLoop(device, MemoryTun(), MemoryUdp(MemoryNetwork(), "192.0.2.1"))
    server = UapiServer(open_uapi_socket(name, directory), socket_path(name, directory),
                        DeviceUapi(device, None, lambda: NOW, wall_clock_of), loop)
    try:
        with spinning(loop):
            client = UapiClient(directory, timeout=3)
            assert client.drops(name) == {"bad_mac1": 1}
            control = DeviceControl(uapi=client)
            state = control.get(name)
            document = to_json(name, state, False, control.drops(name))
            assert document["drops"] == {"bad_mac1": 1}
            assert "drops" not in to_json(name, state, False, None)
            assert control.drops("wgxnosuch0") is None
    finally:
        server.close()
        loop.close()


# --- fuzz: malformed requests get an errno and change nothing ---------------------------------

KEYS = ["private_key", "listen_port", "fwmark", "replace_peers", "public_key", "preshared_key",
        "endpoint", "persistent_keepalive_interval", "replace_allowed_ips", "allowed_ip",
        "remove", "update_only", "protocol_version", "get", "set", ""]
HEX_KEY = st.binary(min_size=32, max_size=32).map(bytes.hex)
VALUES = st.one_of(
    HEX_KEY,
    st.binary(min_size=0, max_size=40).map(bytes.hex),
    st.sampled_from(["true", "false", "0", "1", "65536", "-1", "4294967296", "01",
                     "10.0.0.1:51820", "[fd00::1]:51820", "10.0.0.0/33", "fd00::/129",
                     "10.9.0.0/24", "256.1.1.1/32", "", "=", "0x10", " 1"]),
    st.text(max_size=20),
)
LINE = st.one_of(
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=30).filter(lambda t: "\n" not in t),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINE, max_size=12), garbage=st.binary(max_size=16))
def test_fuzz_set_requests_refused_change_nothing(listener, lines: list[str],
                                                  garbage: bytes) -> None:
    device = make_device()
    server = UapiServer(listener, "", DeviceUapi(device, FakeNet(), lambda: NOW, wall_clock_of), NullLoop())
    before = format_get(device_state(device, wall_clock_of))
    body = "".join(line + "\n" for line in lines if line)
    for request in (f"set=1\n{body}\n".encode(), b"set=1\n" + body.encode() + garbage + b"\n\n"):
        answer = serve_bytes(server, request)
        assert answer.startswith(b"errno=") and answer.endswith(b"\n\n"), answer
        status = int(answer[len(b"errno="):].split(b"\n")[0])
        assert status <= 0
        after = format_get(device_state(device, wall_clock_of))
        if status != 0:
            assert after == before, (request, answer)
        before = after


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_fuzz_arbitrary_bytes_never_change_state_unless_a_set_succeeds(listener,
                                                                      data: bytes) -> None:
    device = make_device()
    server = UapiServer(listener, "", DeviceUapi(device, FakeNet(), lambda: NOW, wall_clock_of), NullLoop())
    before = format_get(device_state(device, wall_clock_of))
    answer = serve_bytes(server, data)
    after = format_get(device_state(device, wall_clock_of))
    if not data.startswith(b"set=1\n") or b"errno=0\n" not in answer:
        assert after == before, (data, answer)
