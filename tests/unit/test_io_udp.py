"""UdpBind's batching rules, with recording stand-ins for the sockets (no kernel involved)."""

from __future__ import annotations

import errno
import socket

from wgpy.io import udp
from wgpy.io.udp import UdpBind


class RecordingSocket:
    def __init__(self, family: int, fail_gso_with: int | None = None) -> None:
        self.family = family
        self.fail_gso_with = fail_gso_with
        self.calls: list[tuple] = []

    def sendmsg(self, buffers, ancdata, flags, address):
        if self.fail_gso_with is not None:
            raise OSError(self.fail_gso_with, "refused")
        (level, kind, value), = ancdata
        assert (level, kind) == (udp.SOL_UDP, udp.UDP_SEGMENT)
        self.calls.append(("gso", [bytes(b) for b in buffers], int.from_bytes(value, "little"),
                           address))

    def sendto(self, data, address):
        self.calls.append(("one", bytes(data), address))


def bind_with(sock4: RecordingSocket, sock6: RecordingSocket | None = None) -> UdpBind:
    bind = UdpBind(want_gso=True)
    bind.gso = True
    bind.sock4 = sock4  # type: ignore[assignment]
    bind.sock6 = sock6  # type: ignore[assignment]
    return bind


def test_gso_runs_break_on_endpoint_size_and_count() -> None:
    sock = RecordingSocket(socket.AF_INET)
    bind = bind_with(sock)
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 2)
    datagrams = (
        [(b"x" * 100, a)] * 3 + [(b"y" * 60, a)]  # a run ended by a shorter datagram
        + [(b"z" * 100, a)]                       # alone: a single sendto
        + [(b"w" * 80, b)] * 70                   # 64 at most per sendmsg
        + [(b"v" * 90, b)]                        # larger than the run: starts a new one
    )
    bind.send_batch(datagrams)
    kinds = [(call[0], len(call[1]) if call[0] == "gso" else 1, call[-1]) for call in sock.calls]
    assert kinds == [("gso", 4, a), ("one", 1, a), ("gso", 64, b), ("gso", 6, b), ("one", 1, b)]
    assert sock.calls[0][2] == 100 and sock.calls[2][2] == 80
    sent = []
    for call in sock.calls:
        sent.extend(call[1] if call[0] == "gso" else [call[1]])
    assert sent == [d for d, _ in datagrams]  # nothing lost, order kept


def test_gso_failure_falls_back_to_single_sends_for_good() -> None:
    sock = RecordingSocket(socket.AF_INET, fail_gso_with=errno.EIO)
    bind = bind_with(sock)
    datagrams = [(b"x" * 100, ("10.0.0.1", 1))] * 3
    bind.send_batch(datagrams)
    assert [call[0] for call in sock.calls] == ["one"] * 3
    assert bind.gso is False
    bind.send_batch(datagrams)
    assert len(sock.calls) == 6


def test_families_and_mapped_addresses_pick_the_right_socket() -> None:
    sock4, sock6 = RecordingSocket(socket.AF_INET), RecordingSocket(socket.AF_INET6)
    bind = bind_with(sock4, sock6)
    bind.gso = False
    assert bind.send(b"a", ("fd00::1", 5))
    assert bind.send(b"b", ("::ffff:10.0.0.9", 6))
    assert bind.send(b"c", ("10.0.0.8", 7))
    assert sock6.calls == [("one", b"a", ("fd00::1", 5))]
    assert sock4.calls == [("one", b"b", ("10.0.0.9", 6)), ("one", b"c", ("10.0.0.8", 7))]
    bind.sock6 = None
    assert not bind.send(b"d", ("fd00::1", 5))
    assert bind.send_errors == 1


def test_normalize_endpoint_unmaps_v4_in_v6() -> None:
    assert udp.normalize_endpoint(("::ffff:10.0.0.1", 5, 0, 0)) == ("10.0.0.1", 5)
    assert udp.normalize_endpoint(("fd00::1", 5, 0, 0)) == ("fd00::1", 5)
    assert udp.unmap("::ffff:10.0.0.1") == "10.0.0.1"
    assert udp.unmap("fd00::1") == "fd00::1"
