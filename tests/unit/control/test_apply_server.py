"""The UAPI server's framing on a real unix socket, served by DeviceLoop.

The handler here records requests, so these tests pin the protocol framing (several requests
per connection, the get trailer, EOF, bad operations, socket file rules); the Device behind it
is covered in test_apply.py and the e2e tests.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat

import pytest
from looplib import FakeClock, spinning

from wgpy.control import server as server_module
from wgpy.control.server import UapiServer, open_uapi_socket
from wgpy.control.uapi import socket_path
from wgpy.core.device import Device
from wgpy.io.loop import DeviceLoop
from wgpy.io.memory import MemoryNetwork, MemoryTun, MemoryUdp


class RecordingHandler:
    def __init__(self) -> None:
        self.sets: list[str] = []
        self.get_text = "private_key=00\nerrno=0\n\n"
        self.set_result = 0

    def handle_get(self) -> str:
        return self.get_text

    def handle_set(self, body: str) -> int:
        self.sets.append(body)
        return self.set_result


@pytest.fixture
def served(tmp_path):
    directory = str(tmp_path / "wireguard")
    listener = open_uapi_socket("wgdtest0", directory)
    loop = DeviceLoop(Device(rng=os.urandom), MemoryTun(), MemoryUdp(MemoryNetwork(), "192.0.2.1"))
    handler = RecordingHandler()
    path = socket_path("wgdtest0", directory)
    server = UapiServer(listener, path, handler, loop)
    with spinning(loop):
        yield path, handler, server
    server.close()
    loop.close()


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(3)
    sock.connect(path)
    return sock


def read_until(sock: socket.socket, terminator: bytes, count: int = 1) -> bytes:
    data = b""
    while data.count(terminator) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_socket_file_modes_follow_wireguard_go(served):
    path, _, _ = served
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_several_requests_on_one_connection(served):
    path, handler, _ = served
    with connect(path) as sock:
        sock.sendall(b"get=1\n\nset=1\nlisten_port=1\n\nset=1\n\nget=1\n\n")
        data = read_until(sock, b"errno=", 4)
    assert data == (b"private_key=00\nerrno=0\n\n" + b"errno=0\n\n" * 2
                    + b"private_key=00\nerrno=0\n\n")
    assert handler.sets == ["listen_port=1\n", ""]


def test_set_arriving_in_pieces_is_handled_once_complete(served):
    path, handler, _ = served
    with connect(path) as sock:
        for piece in (b"se", b"t=1\npublic_key=", b"ab\nallowed_ip=10.0.0.0/8\n", b"\n"):
            sock.sendall(piece)
        assert read_until(sock, b"\n\n") == b"errno=0\n\n"
    assert handler.sets == ["public_key=ab\nallowed_ip=10.0.0.0/8\n"]


def test_set_error_is_reported_negated(served):
    path, handler, _ = served
    handler.set_result = errno.EADDRINUSE
    with connect(path) as sock:
        sock.sendall(b"set=1\nlisten_port=5\n\n")
        assert read_until(sock, b"\n\n") == b"errno=-98\n\n"


def test_get_with_a_trailing_character_is_einval_and_the_connection_goes_on(served):
    path, _handler, _ = served
    with connect(path) as sock:
        sock.sendall(b"get=1\nxget=1\n\n")
        data = read_until(sock, b"errno=", 2)
    # wireguard-go reads one byte after get=1; what follows it is the next operation
    assert data == b"errno=-22\n\n" + b"private_key=00\nerrno=0\n\n"


def test_unknown_operation_closes_without_answer(served):
    path, _handler, _ = served
    with connect(path) as sock:
        sock.sendall(b"delete=1\n\n")
        assert sock.recv(100) == b""


def test_set_ended_by_eof_is_applied_and_answered(served):
    path, handler, _ = served
    with connect(path) as sock:
        sock.sendall(b"set=1\nfwmark=7\n")
        sock.shutdown(socket.SHUT_WR)
        assert read_until(sock, b"\n\n") == b"errno=0\n\n"
    assert handler.sets == ["fwmark=7\n"]


def test_large_get_answer_is_delivered_whole(served):
    path, handler, _ = served
    handler.get_text = "".join(f"allowed_ip=10.{i >> 8 & 255}.{i & 255}.0/24\n"
                               for i in range(60000)) + "errno=0\n\n"
    with connect(path) as sock:
        sock.sendall(b"get=1\n\n")
        data = read_until(sock, b"errno=0\n\n")
    assert data.decode() == handler.get_text


def test_many_clients_at_once(served):
    path, _handler, _ = served
    socks = [connect(path) for _ in range(20)]
    for sock in socks:
        sock.sendall(b"get=1\n\n")
    for sock in socks:
        assert read_until(sock, b"errno=0\n\n").endswith(b"errno=0\n\n")
        sock.close()


def test_socket_file_is_removed_on_close_and_its_deletion_is_noticed(served):
    path, _, server = served
    assert server.socket_still_ours()
    os.unlink(path)
    assert not server.socket_still_ours()


def test_stale_socket_is_replaced_and_live_one_refused(tmp_path):
    directory = str(tmp_path)
    path = socket_path("wgdstale", directory)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    live = open_uapi_socket("wgdstale", directory)
    with pytest.raises(OSError) as info:
        open_uapi_socket("wgdstale", directory)
    assert info.value.errno == errno.EADDRINUSE
    live.close()
    os.unlink(path)


def test_a_key_line_taken_for_an_operation_is_not_logged(served, caplog):
    path, _handler, _ = served
    key_hex = "a1" * 32
    with caplog.at_level("ERROR", logger="wgpy.control.server"), connect(path) as sock:
        sock.sendall(b"set=1\n\nprivate_key=" + key_hex.encode() + b"\n\n")
        assert read_until(sock, b"\n\n") == b"errno=0\n\n"
        assert sock.recv(100) == b""  # then hung up on
    assert any("invalid UAPI operation: private_key" in m for m in caplog.messages)
    assert all(key_hex[:16] not in m for m in caplog.messages)


def test_redact_cuts_key_material() -> None:
    from wgpy.control.server import _redact

    key_b64 = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
    assert key_b64 not in _redact(f"failed to parse line {key_b64!r}")
    assert "a1b2" * 8 not in _redact("x " + "a1b2" * 16)
    assert _redact("invalid UAPI peer key: endpointx") == "invalid UAPI peer key: endpointx"


# --- bounded cost per connection: descriptors, connection count, idleness, output, scanning ---
# These drive the loop round by round from the test (no thread) on a scripted clock, and count
# what the server does rather than timing it.

class NoRoomListener:
    """A real listening socket (so the loop can poll it) whose accept fails with EMFILE, as it
    does once the process has no descriptor left, until `no_room` is cleared."""

    def __init__(self, real: socket.socket, code: int = errno.EMFILE) -> None:
        self.real = real
        self.code = code
        self.no_room = True
        self.accepts = 0

    def fileno(self) -> int:
        return self.real.fileno()

    def setblocking(self, flag: bool) -> None:
        self.real.setblocking(flag)

    def accept(self):
        self.accepts += 1
        if self.no_room:
            raise OSError(self.code, os.strerror(self.code))
        return self.real.accept()

    def close(self) -> None:
        self.real.close()


@pytest.fixture
def stepped(tmp_path):
    """(path, handler, loop, clock, make_server): a server on a loop the test turns itself."""
    directory = str(tmp_path / "wireguard")
    clock = FakeClock()
    loop = DeviceLoop(Device(rng=os.urandom), MemoryTun(), MemoryUdp(MemoryNetwork(), "192.0.2.1"),
                      clock=clock)
    handler = RecordingHandler()
    path = socket_path("wgdstep0", directory)
    servers = []

    def make_server(wrap=lambda listener: listener, **kwargs) -> UapiServer:
        server = UapiServer(wrap(open_uapi_socket("wgdstep0", directory)), path, handler, loop,
                            **kwargs)
        servers.append(server)
        return server

    yield path, handler, loop, clock, make_server
    for server in servers:
        server.close()
    loop.close()


def rounds(loop: DeviceLoop, count: int = 5) -> None:
    for _ in range(count):
        loop.run_once(max_wait=0)


def received(sock: socket.socket) -> bytes:
    """What has arrived so far (b"" once the server hung up), without waiting."""
    data = b""
    sock.setblocking(False)
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(3)
    return data


def hung_up(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(3)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.EINVAL])
def test_out_of_descriptors_the_listener_rests_instead_of_spinning(stepped, caplog, code):
    """EMFILE/ENFILE: no descriptor left; EINVAL stands for any error that is not about the
    one connection being accepted: none of them may be retried at loop speed."""
    path, _handler, loop, _clock, make_server = stepped
    listeners: list[NoRoomListener] = []
    make_server(lambda real: listeners.append(NoRoomListener(real, code)) or listeners[0])
    with caplog.at_level(logging.ERROR, logger="wgpy.control.server"), connect(path):
        rounds(loop, 50)  # a connection waits: the listener stays readable
    assert listeners[0].accepts == 1  # not once per round
    assert len(caplog.records) == 1


def test_a_resting_listener_tries_again_later_and_serves_once_there_is_room(stepped):
    path, _handler, loop, clock, make_server = stepped
    listeners: list[NoRoomListener] = []
    make_server(lambda real: listeners.append(NoRoomListener(real)) or listeners[0], clock=clock)
    with connect(path) as client:
        client.sendall(b"get=1\n\n")
        rounds(loop, 10)
        assert listeners[0].accepts == 1
        clock.now += server_module.ACCEPT_BACKOFF / 2
        rounds(loop, 10)
        assert listeners[0].accepts == 1  # still resting
        clock.now += max(server_module.ACCEPT_BACKOFF, 1.0)  # and the loop's housekeeping
        rounds(loop, 10)
        assert listeners[0].accepts == 2  # tried again, still no room: rests again
        listeners[0].no_room = False
        clock.now += max(server_module.ACCEPT_BACKOFF, 1.0)
        rounds(loop, 10)
        assert received(client) == b"private_key=00\nerrno=0\n\n"


def test_connections_are_capped_and_the_longest_idle_one_makes_room(stepped, monkeypatch):
    path, _handler, loop, clock, make_server = stepped
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 4)
    server = make_server(clock=clock)
    idle = [connect(path) for _ in range(4)]
    rounds(loop)
    clock.now += 0.1
    idle[0].sendall(b"get=1\n\n")  # busy a moment ago: the others were idle longer
    rounds(loop)
    assert received(idle[0]).endswith(b"errno=0\n\n")
    with connect(path) as newcomer:
        newcomer.sendall(b"get=1\n\n")
        rounds(loop, 10)
        assert len(server.connections) == 4
        assert received(newcomer) == b""  # waits: nobody has been idle long enough
        clock.now += server_module.EVICT_AFTER + 1.0
        rounds(loop, 10)
        assert received(newcomer) == b"private_key=00\nerrno=0\n\n"
        assert len(server.connections) == 4
        assert [hung_up(sock) for sock in idle] == [False, True, False, False]
    for sock in idle:
        sock.close()


def test_a_connection_that_moves_no_byte_for_the_idle_timeout_is_closed(stepped):
    path, _handler, loop, clock, make_server = stepped
    server = make_server(clock=clock)
    silent, partial, active = connect(path), connect(path), connect(path)
    rounds(loop)
    partial.sendall(b"set=1\nlisten_port=1\n")  # never finished
    rounds(loop)
    for step in range(3):
        clock.now += server_module.IDLE_TIMEOUT / 2
        active.sendall(b"get=1\n\n")
        rounds(loop)
        assert received(active).endswith(b"errno=0\n\n"), step
    assert hung_up(silent) and hung_up(partial)
    assert not hung_up(active)
    assert len(server.connections) == 1
    for sock in (silent, partial, active):
        sock.close()


class CountingBuffer(bytearray):
    """A bytearray that adds up how many bytes its find() calls look at."""

    scanned = 0

    def find(self, sub, start=0, *args):  # type: ignore[override]
        CountingBuffer.scanned += len(self) - (start if start >= 0 else len(self) + start)
        return super().find(sub, start, *args)


def test_a_request_arriving_a_byte_at_a_time_is_scanned_once_not_from_its_start(stepped):
    path, handler, loop, _clock, make_server = stepped
    server = make_server()
    request = b"set=1\n" + b"allowed_ip=10.0.0.0/8\n" * 150 + b"\n"
    with connect(path) as client:
        rounds(loop)
        (conn,) = server.connections.values()
        conn.inbuf = CountingBuffer()
        CountingBuffer.scanned = 0
        for byte in request:
            client.sendall(bytes([byte]))
            loop.run_once(max_wait=0)
        rounds(loop)
        assert received(client) == b"errno=0\n\n"
    assert len(handler.sets) == 1
    assert 0 < CountingBuffer.scanned <= 3 * len(request)


def test_answers_a_client_does_not_read_are_bounded_and_all_arrive_once_it_reads(stepped):
    path, handler, loop, _clock, make_server = stepped
    server = make_server()
    handler.get_text = "x" * 100_000 + "\nerrno=0\n\n"
    answer = handler.get_text.encode()
    with connect(path) as client:
        client.sendall(b"get=1\n\n" * 100)
        rounds(loop, 20)
        (conn,) = server.connections.values()
        assert len(conn.outbuf) <= server_module.OUTPUT_HIGH_WATER + len(answer)
        data = b""
        for _ in range(2000):
            data += received(client)
            if len(data) >= 100 * len(answer):
                break
            loop.run_once(max_wait=0)
            assert len(conn.outbuf) <= server_module.OUTPUT_HIGH_WATER + len(answer)
        assert data == answer * 100
