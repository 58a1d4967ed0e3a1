"""Link, address and route changes as they happen: a NETLINK_ROUTE socket for the event loop.

Two things follow the host's network configuration the moment it changes instead of on a poll:

- the TUN's MTU (RTM_NEWLINK for our interface): the core pads to it, and the kernel and
  wireguard-go use a new MTU for the very next packet (wireguard-go reads its TUN's MTU events);
- the sticky source addresses (any address or route change): the kernel checks on every send that
  an endpoint's cached source is still a local address and, for IPv4, that the route to the peer
  still leaves through the interface the peer's packet came in on, and otherwise forgets it.
  Asking the routing table per datagram is too dear here, so the loop asks it for each cached
  source when addresses or routes change (`source_still_valid`).

The socket is read with MSG_DONTWAIT until EAGAIN; if the kernel had to drop events (ENOBUFS) the
reader reports everything as changed.

The interface need not stay in the daemon's namespace (`ip link set wg0 netns X`, as the kernel
selftest's own setup does: the UDP socket stays where the daemon runs). Its link events then come
from that namespace: the link socket listens to all namespaces our own has an id for
(NETLINK_LISTEN_ALL_NSID; each message says which in a cmsg) and keeps those of the interface's
(`RouteEvents.nsid`, looked up from the TUN's TUNGETDEVNETNS fd, `namespace_id`). A socket made
inside that namespace would hear the same, but would keep the namespace alive after
`ip netns del` (a socket holds its namespace), and with it the interface and the daemon. The MTU
and index are asked for on a short-lived socket made inside the interface's namespace (the thread
enters it for the socket() call and comes back at once; the daemon is single-threaded). When the
link leaves a namespace, an RTM_DELLINK for it comes from there (`Changes.link_left`) and the
caller looks the interface up where it went. Addresses and routes are watched where the UDP
socket is.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass

log = logging.getLogger("wgpy.io.rtnl")

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
IFLA_IFNAME, IFLA_MTU = 3, 4
ALL_GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
              | RTMGRP_IPV6_ROUTE)
ADDRESS_AND_ROUTE_GROUPS = ALL_GROUPS & ~RTMGRP_LINK
CLONE_NEWNET = 0x40000000
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_GETADDR, RTM_GETROUTE = 22, 26
RTM_NEWNSID, RTM_GETNSID = 88, 90
NETNSA_NSID, NETNSA_FD = 1, 3
NLM_F_ACK = 0x4
SOL_NETLINK = 270
NETLINK_LISTEN_ALL_NSID = 8
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_SRC, RTA_OIF = 1, 2, 4

_nlmsghdr = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_ifinfomsg = struct.Struct("=BxHiII")  # family, type, index, flags, change
_rtattr = struct.Struct("=HH")  # length, type
_u32 = struct.Struct("=I")
_int = struct.Struct("=i")
_IN_PKTINFO_SIZE = 12  # ipi_ifindex, ipi_spec_dst, ipi_addr (io/udp.py)
_ifaddrmsg = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_rtmsg = struct.Struct("=BBBBBBBBI")  # family, dst/src length, tos, table, protocol, scope, type
_ADDRESS_OR_ROUTE = frozenset((RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE))


@dataclass
class Changes:
    """What one read of the socket saw."""

    mtu: int | None = None  # the TUN's new MTU, if a link message for it said
    addresses_or_routes: bool = False
    overrun: bool = False  # events were lost: re-read everything
    link_left: bool = False  # our interface was deleted or moved to another namespace


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_messages(buffer: bytes, ifindex: int, changes: Changes) -> None:
    """Fold the netlink messages in `buffer` into `changes` (kernel input, still bounds-checked:
    a short or malformed message ends the parse)."""
    offset = 0
    end = len(buffer)
    while offset + _nlmsghdr.size <= end:
        length, kind, _flags, _seq, _pid = _nlmsghdr.unpack_from(buffer, offset)
        if length < _nlmsghdr.size or offset + length > end:
            return
        body = offset + _nlmsghdr.size
        if kind == RTM_NEWLINK and length >= _nlmsghdr.size + _ifinfomsg.size:
            index = _ifinfomsg.unpack_from(buffer, body)[2]
            if index == ifindex:
                mtu = _link_mtu(buffer, body + _ifinfomsg.size, offset + length)
                if mtu is not None:
                    changes.mtu = mtu
        elif kind == RTM_DELLINK and length >= _nlmsghdr.size + _ifinfomsg.size:
            # sent to the namespace a link leaves, whether deleted or moved away
            if _ifinfomsg.unpack_from(buffer, body)[2] == ifindex:
                changes.link_left = True
        elif kind in _ADDRESS_OR_ROUTE:
            changes.addresses_or_routes = True
        offset += _align(length)


def _link_mtu(buffer: bytes, offset: int, end: int) -> int | None:
    while offset + _rtattr.size <= end:
        length, kind = _rtattr.unpack_from(buffer, offset)
        if length < _rtattr.size or offset + length > end:
            return None
        if kind == IFLA_MTU and length >= _rtattr.size + _u32.size:
            return _u32.unpack_from(buffer, offset + _rtattr.size)[0]
        offset += _align(length)
    return None


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def netlink_socket(netns_fd: int | None = None) -> socket.socket:
    """A NETLINK_ROUTE socket of the namespace `netns_fd` (an open /proc/.../ns/net or
    TUNGETDEVNETNS fd), of ours if None. The calling thread enters that namespace just for the
    socket() call."""
    if netns_fd is None or same_namespace(netns_fd):
        return _new_netlink_socket()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(netns_fd)
        try:
            return _new_netlink_socket()
        finally:
            _setns(own)  # (cannot fail: our own namespace, and we are allowed to enter theirs)
    finally:
        os.close(own)


def _new_netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)


def link_index_and_mtu(name: str, netns_fd: int | None = None) -> tuple[int, int]:
    """(interface index, MTU) of the link `name` in the namespace `netns_fd` (RTM_GETLINK by
    name). OSError if there is no such link there."""
    sock = netlink_socket(netns_fd)
    try:
        sock.settimeout(1.0)
        sock.bind((0, 0))
        body = _ifinfomsg.pack(0, 0, 0, 0, 0) + _attribute(IFLA_IFNAME, name.encode() + b"\0")
        for kind, answer in _request(sock, 1, RTM_GETLINK, 0, body):
            if kind == NLMSG_ERROR:
                error = -_int.unpack_from(answer)[0] if len(answer) >= 4 else errno.EIO
                raise OSError(error, f"RTM_GETLINK {name}: {os.strerror(error)}")
            if kind == RTM_NEWLINK and len(answer) >= _ifinfomsg.size:
                mtu = _link_mtu(answer, _ifinfomsg.size, len(answer))
                if mtu is not None:
                    return _ifinfomsg.unpack_from(answer)[2], mtu
        raise OSError(errno.ENODEV, f"RTM_GETLINK {name}: no link with an MTU in the answer")
    finally:
        sock.close()


_NSID_CMSG_SPACE = socket.CMSG_SPACE(_int.size)


def message_nsid(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The namespace id a NETLINK_LISTEN_ALL_NSID socket's message came from; None for our
    own namespace (no id, or none given)."""
    for level, kind, value in ancdata:
        if level == SOL_NETLINK and kind == NETLINK_LISTEN_ALL_NSID and len(value) >= 4:
            nsid = _int.unpack_from(value)[0]
            return None if nsid < 0 else nsid
    return None


def namespace_id(netns_fd: int) -> int | None:
    """Our namespace's id for the namespace `netns_fd` (RTM_GETNSID), None if that is our
    own and has none. Another namespace without one gets one (RTM_NEWNSID, as the kernel does
    itself when it moves a link out of ours): only then do its events reach us."""
    sock = netlink_socket()
    try:
        sock.settimeout(1.0)
        sock.bind((0, 0))
        nsid = _get_nsid(sock, 1, netns_fd)
        if nsid is not None or same_namespace(netns_fd):
            return nsid
        body = bytes(4) + _attribute(NETNSA_FD, _u32.pack(netns_fd)) + _attribute(
            NETNSA_NSID, _int.pack(-1))
        for kind, answer in _request(sock, 2, RTM_NEWNSID, NLM_F_ACK, body):
            error = -_int.unpack_from(answer)[0] if kind == NLMSG_ERROR else 0
            if error and error != errno.EEXIST:  # (EEXIST: someone gave it one meanwhile)
                raise OSError(error, f"RTM_NEWNSID: {os.strerror(error)}")
        nsid = _get_nsid(sock, 3, netns_fd)
        if nsid is None:
            raise OSError(errno.ENOENT, "RTM_NEWNSID: the namespace still has no id")
        return nsid
    finally:
        sock.close()


def _get_nsid(sock: socket.socket, sequence: int, netns_fd: int) -> int | None:
    body = bytes(4) + _attribute(NETNSA_FD, _u32.pack(netns_fd))  # rtgenmsg, padded
    for kind, answer in _request(sock, sequence, RTM_GETNSID, 0, body):
        if kind == NLMSG_ERROR:
            error = -_int.unpack_from(answer)[0] if len(answer) >= 4 else errno.EIO
            raise OSError(error, f"RTM_GETNSID: {os.strerror(error)}")
        for attribute, value in _attributes(answer, 4):
            if attribute == NETNSA_NSID and len(value) == 4:
                nsid = _int.unpack(value)[0]
                return None if nsid < 0 else nsid
    return None


def same_namespace(netns_fd: int) -> bool:
    """Is `netns_fd` our thread's own network namespace?"""
    ours, theirs = os.stat("/proc/thread-self/ns/net"), os.fstat(netns_fd)
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


class RouteEvents:
    """The subscribed socket. `fileno()` for the loop, `read()` when it is readable.
    `groups`: the RTMGRP_* to follow, in our namespace; with `all_namespaces` in every one
    ours has an id for, of which only those of namespace `nsid` are kept."""

    def __init__(self, ifindex: int, groups: int = ALL_GROUPS,
                 all_namespaces: bool = False) -> None:
        self.ifindex = ifindex
        # with `all_namespaces`: the id (ours for it) of the namespace whose messages count,
        # None for our own
        self.nsid: int | None = None
        self.all_namespaces = all_namespaces
        self.sock = netlink_socket()
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            if all_namespaces:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1)
            self.sock.bind((0, groups))
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 64) -> Changes:
        changes = Changes()
        for _ in range(limit):
            try:
                buffer, ancdata, _flags, _address = self.sock.recvmsg(
                    1 << 16, _NSID_CMSG_SPACE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel dropped events for us
                    changes.overrun = True
                    continue
                raise
            if self.all_namespaces and message_nsid(ancdata) != self.nsid:
                continue  # another namespace's
            parse_messages(buffer, self.ifindex, changes)
        return changes

    def close(self) -> None:
        self.sock.close()


class SourceChecker:
    """Is a cached source still one the kernel would send from? Asked per endpoint when
    addresses or routes changed, over a netlink socket of its own (synchronous requests: an
    address dump, a route lookup per distinct endpoint, each answered in microseconds)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.sock.settimeout(1.0)  # the kernel answers at once; never hang the loop on it
        self.sock.bind((0, 0))
        self._sequence = 0
        self._local: set[bytes] = set()

    def _request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        self._sequence += 1
        return _request(self.sock, self._sequence, kind, flags, body)

    def refresh(self) -> None:
        """Read the host's addresses once per round of checks."""
        local = set()
        for kind, body in self._request(RTM_GETADDR, NLM_F_DUMP, bytes(_ifaddrmsg.size)):
            if kind != RTM_NEWADDR:
                continue
            for attribute, value in _attributes(body, _ifaddrmsg.size):
                if attribute in (IFA_ADDRESS, IFA_LOCAL):
                    local.add(value)
        self._local = local

    def still_valid(self, remote: str, source: bytes, check_route: bool = True) -> bool:
        """The kernel's test in send4/send6 for a peer at `remote` and a source received as an
        in_pktinfo / in6_pktinfo: the address is still local; for IPv4 also (`check_route`) the
        route to the peer from it leaves through the interface the peer's packet arrived on (a
        better route through another interface means the routing's choice again)."""
        if len(source) != _IN_PKTINFO_SIZE:
            return source[:16] in self._local
        if source[4:8] not in self._local:
            return False
        if not check_route:
            return True
        arrived_on = _int.unpack_from(source)[0]
        try:
            remote_packed = socket.inet_aton(remote)
        except OSError:
            return True  # (an IPv4 pktinfo always comes with an IPv4 peer)
        device = self.route_device(remote_packed, source[4:8])
        return device is not None and (not arrived_on or device == arrived_on)

    def route_device(self, remote: bytes, source: bytes) -> int | None:
        """The output interface of the route to `remote` from `source` (packed IPv4 addresses),
        None if there is none (the kernel refuses a source that is not local: EINVAL)."""
        body = _rtmsg.pack(socket.AF_INET, 32, 32, 0, 0, 0, 0, 0, 0)
        body += _attribute(RTA_DST, remote) + _attribute(RTA_SRC, source)
        for kind, answer in self._request(RTM_GETROUTE, 0, body):
            if kind == RTM_NEWROUTE:
                for attribute, value in _attributes(answer, _rtmsg.size):
                    if attribute == RTA_OIF and len(value) == 4:
                        return _u32.unpack(value)[0]
        return None

    def close(self) -> None:
        self.sock.close()


def _request(sock: socket.socket, sequence: int, kind: int, flags: int,
             body: bytes) -> list[tuple[int, bytes]]:
    """Send one request; the answer's (type, body) messages up to the end of a dump or the one
    reply. An error reply comes back as (NLMSG_ERROR, its body)."""
    sock.send(_nlmsghdr.pack(_nlmsghdr.size + len(body), kind, NLM_F_REQUEST | flags,
                             sequence, 0) + body)
    answer: list[tuple[int, bytes]] = []
    while True:
        buffer = sock.recv(1 << 16)
        offset = 0
        while offset + _nlmsghdr.size <= len(buffer):
            length, kind, _flags, seq, _pid = _nlmsghdr.unpack_from(buffer, offset)
            if length < _nlmsghdr.size or offset + length > len(buffer):
                break
            body_of = buffer[offset + _nlmsghdr.size : offset + length]
            offset += _align(length)
            if seq != sequence:
                continue  # an answer to an earlier request that timed out
            if kind == NLMSG_DONE:
                return answer
            answer.append((kind, body_of))
            if kind == NLMSG_ERROR or not flags & NLM_F_DUMP:
                return answer


def _attribute(kind: int, value: bytes) -> bytes:
    raw = _rtattr.pack(_rtattr.size + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def _attributes(body: bytes, offset: int) -> list[tuple[int, bytes]]:
    found = []
    while offset + _rtattr.size <= len(body):
        length, kind = _rtattr.unpack_from(body, offset)
        if length < _rtattr.size or offset + length > len(body):
            break
        found.append((kind, body[offset + _rtattr.size : offset + length]))
        offset += _align(length)
    return found
