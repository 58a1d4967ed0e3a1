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
"""

from __future__ import annotations

import errno
import logging
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
RTM_NEWLINK = 16
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
IFLA_MTU = 4

_nlmsghdr = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_ifinfomsg = struct.Struct("=BxHiII")  # family, type, index, flags, change
_rtattr = struct.Struct("=HH")  # length, type
_u32 = struct.Struct("=I")
_ADDRESS_OR_ROUTE = frozenset((RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE))


@dataclass
class Changes:
    """What one read of the socket saw."""

    mtu: int | None = None  # the TUN's new MTU, if a link message for it said
    addresses_or_routes: bool = False
    overrun: bool = False  # events were lost: re-read everything


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


class RouteEvents:
    """The subscribed socket. `fileno()` for the loop, `read()` when it is readable."""

    def __init__(self, ifindex: int) -> None:
        self.ifindex = ifindex
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
                            | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE))
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 64) -> Changes:
        changes = Changes()
        for _ in range(limit):
            try:
                buffer = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel dropped events for us
                    changes.overrun = True
                    continue
                raise
            parse_messages(buffer, self.ifindex, changes)
        return changes

    def close(self) -> None:
        self.sock.close()


class SourceChecker:
    """Is a cached source still one the kernel would send from? Asked per endpoint when
    addresses or routes changed, through pyroute2 (route lookups, the host's addresses)."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute  # the daemon's own namespace

        self._ipr = IPRoute()
        self._local: set[str] = set()

    def refresh(self) -> None:
        """Read the host's addresses once per round of checks."""
        self._local = {
            str(message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS"))
            for message in self._ipr.get_addr()
        }

    def still_valid(self, remote: str, local: str, arrived_on: int) -> bool:
        """The kernel's test in send4/send6: the source is a local address; for IPv4 also the
        route to the peer from that source leaves through the interface the peer's packet
        arrived on."""
        if local not in self._local:
            return False
        if ":" in local:
            return True
        try:
            routes = self._ipr.route("get", dst=remote.split("%", 1)[0], src=local)
        except Exception:  # noqa: BLE001 -- pyroute2's NetlinkError: no route from there
            return False
        for route in routes:
            oif = route.get_attr("RTA_OIF")
            if oif is not None and arrived_on and oif != arrived_on:
                return False
        return True

    def close(self) -> None:
        self._ipr.close()
