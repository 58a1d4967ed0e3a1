"""UdpBind's batching rules, with recording stand-ins for the sockets (no kernel involved)."""

from __future__ import annotations

import errno
import socket
import struct

from wgpy.errors import DropReason
from wgpy.io import udp
from wgpy.io.udp import UdpBind


class RecordingSocket:
    """Records sends. Every send must say MSG_DONTWAIT: a blocking send would stall the loop."""

    def __init__(self, family: int, fail_gso_with: int | None = None) -> None:
        self.family = family
        self.fail_gso_with = fail_gso_with
        self.calls: list[tuple] = []
        self.full = False  # the send buffer is full: a nonblocking send says EAGAIN
        self.gone_sources: set[bytes] = set()  # pktinfo addresses that are no longer local

    def _check(self, flags: int) -> None:
        assert flags & socket.MSG_DONTWAIT, "a send without MSG_DONTWAIT can block the loop"
        if self.full:
            raise BlockingIOError(errno.EAGAIN, "full")

    def sendmsg(self, buffers, ancdata, flags, address):
        self._check(flags)
        segment = source = None
        for level, kind, value in ancdata:
            if (level, kind) == (udp.SOL_UDP, udp.UDP_SEGMENT):
                if self.fail_gso_with is not None:
                    raise OSError(self.fail_gso_with, "refused")
                segment = int.from_bytes(value, "little")
            else:
                assert (level, kind) in ((socket.IPPROTO_IP, udp.IP_PKTINFO),
                                         (socket.IPPROTO_IPV6, udp.IPV6_PKTINFO))
                source = bytes(value)
        if source is not None and source in self.gone_sources:
            raise OSError(errno.ENETUNREACH, "not local")
        if segment is None:
            (buffer,) = buffers
            self.calls.append(("from", bytes(buffer), source, address))
        else:
            self.calls.append(("gso", [bytes(b) for b in buffers], segment, source, address))

    def sendto(self, data, flags, address):
        self._check(flags)
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
    assert sock.calls[0][3] is None  # no source: the routing's choice
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


def in_pktinfo(ifindex: int, address: str) -> bytes:
    packed = socket.inet_aton(address)
    return struct.pack("i", ifindex) + packed + packed


def in6_pktinfo(address: str, ifindex: int) -> bytes:
    return socket.inet_pton(socket.AF_INET6, address) + struct.pack("i", ifindex)


def test_source_cmsg_fixes_the_address_and_leaves_the_interface_to_routing() -> None:
    cmsg = udp.source_cmsg(in_pktinfo(7, "192.0.2.5"))
    assert cmsg == (socket.IPPROTO_IP, udp.IP_PKTINFO,
                    bytes(4) + socket.inet_aton("192.0.2.5") + bytes(4))
    cmsg = udp.source_cmsg(in6_pktinfo("fd00::5", 7))
    assert cmsg == (socket.IPPROTO_IPV6, udp.IPV6_PKTINFO,
                    socket.inet_pton(socket.AF_INET6, "fd00::5") + bytes(4))
    # a link-local address means nothing without its interface
    link_local = in6_pktinfo("fe80::5", 7)
    assert udp.source_cmsg(link_local) == (socket.IPPROTO_IPV6, udp.IPV6_PKTINFO, link_local)
    assert udp.source_cmsg(b"short") is None
    assert udp.source_address(in_pktinfo(7, "192.0.2.5")) == ("192.0.2.5", 7)
    assert udp.source_address(in6_pktinfo("fe80::5", 3)) == ("fe80::5", 3)


def test_a_sourced_endpoint_is_sent_from_its_source_also_in_gso_runs() -> None:
    sock4, sock6 = RecordingSocket(socket.AF_INET), RecordingSocket(socket.AF_INET6)
    bind = bind_with(sock4, sock6)
    first, second = in_pktinfo(2, "192.0.2.1"), in_pktinfo(2, "192.0.2.2")
    a1, a2 = ("10.0.0.1", 1, first), ("10.0.0.1", 1, second)
    bind.send_batch([(b"x" * 100, a1)] * 3 + [(b"y" * 100, a2)] * 2 + [(b"z" * 100, a1)])
    fixed = [(call[3] if call[0] == "gso" else call[2])[4:8] for call in sock4.calls]
    assert [call[0] for call in sock4.calls] == ["gso", "gso", "from"]
    assert fixed == [socket.inet_aton(a) for a in ("192.0.2.1", "192.0.2.2", "192.0.2.1")]
    assert [len(call[1]) for call in sock4.calls[:2]] == [3, 2]  # a run never mixes sources
    v6 = in6_pktinfo("fd00::2", 4)
    assert bind.send(b"six", ("fd00::9", 9, v6))
    assert sock6.calls == [("from", b"six", v6[:16] + bytes(4), ("fd00::9", 9))]


def test_a_source_no_longer_local_is_retried_without_it_and_reported() -> None:
    sock = RecordingSocket(socket.AF_INET)
    bind = bind_with(sock)
    gone = in_pktinfo(2, "192.0.2.1")
    sock.gone_sources.add(bytes(4) + gone[4:8] + bytes(4))
    endpoint = ("10.0.0.1", 1, gone)
    assert bind.send(b"one", endpoint)
    bind.send_batch([(b"x" * 100, endpoint)] * 3)
    assert sock.calls == [("one", b"one", ("10.0.0.1", 1)),
                          ("gso", [b"x" * 100] * 3, 100, None, ("10.0.0.1", 1))]
    assert bind.stale_sources == {gone}
    assert bind.send_errors == 0


def test_a_full_send_buffer_drops_and_counts_instead_of_blocking() -> None:
    sock = RecordingSocket(socket.AF_INET)
    bind = bind_with(sock)
    sock.full = True
    plain, sourced = ("10.0.0.1", 1), ("10.0.0.1", 1, in_pktinfo(2, "192.0.2.1"))
    assert not bind.send(b"one", plain)
    assert not bind.send(b"two", sourced)
    bind.send_batch([(b"x" * 100, plain)] * 3 + [(b"y" * 100, sourced)] * 2)
    assert bind.drops[DropReason.SEND_BUFFER_FULL] == 7
    assert bind.send_errors == 0 and sock.calls == []
    assert bind.gso  # a full buffer says nothing about GSO
