"""UDP for the data plane: one socket per address family, as wireguard-go's StdNetBind.

The IPv4 socket binds the listen port (0 = the kernel picks one) and the IPv6 socket
(IPV6_V6ONLY) binds the same port; if that port is taken for IPv6 after a random pick, the pick
is retried. A host without IPv6 runs IPv4 only. SO_MARK applies the fwmark, also to sockets
already bound.

Sends never block the single loop: they use MSG_DONTWAIT, and a datagram that finds the send
buffer full is dropped and counted (DropReason.SEND_BUFFER_FULL) instead of stalling reception,
timers and the UAPI, as the kernel drops when its queues are full. Receives use MSG_DONTWAIT too,
so a batch is read until EAGAIN.

Sticky source (the kernel's endpoint src4/src6): each datagram is received with the local
address it was sent to (IP_PKTINFO / IPV6_RECVPKTINFO), reported as a third item of its source,
(host, port, source), where `source` is the kernel's in_pktinfo / in6_pktinfo as received. The
core keeps it in the peer's endpoint, so replies carry it back here and go out from that address
(an IP_PKTINFO / IPV6_PKTINFO cmsg on sendmsg; the interface index is left to routing, except for
an IPv6 link-local source). A send that the kernel refuses because the address is no longer
local (ENETUNREACH for IPv4, EINVAL for IPv6) is retried from the routing's choice, and the source
is remembered in `stale_sources` for the loop to drop from the core's endpoints.

Offloads, detected at open and off unless asked for:
- UDP_SEGMENT (GSO): several equal-sized datagrams to one destination in one sendmsg.
- UDP_GRO: the kernel hands us several datagrams of one flow glued together plus their size.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
from collections import Counter
from collections.abc import Iterable

from wgpy.errors import DropReason
from wgpy.model import Endpoint

log = logging.getLogger("wgpy.io.udp")

SO_MARK = getattr(socket, "SO_MARK", 36)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = 103
UDP_GRO = 104
MSG_DONTWAIT = socket.MSG_DONTWAIT

SOCKET_BUFFER = 7 << 20  # wireguard-go asks for 7 MiB
MAX_DATAGRAM = 65535
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS in the kernel
GSO_MAX_BYTES = 65000
_u16 = struct.Struct("H")
_int = struct.Struct("i")
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IN_PKTINFO_SIZE = 12  # int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr
IN6_PKTINFO_SIZE = 20  # in6_addr ipi6_addr; int ipi6_ifindex
_PKTINFO_CMSG_SPACE = socket.CMSG_SPACE(IN6_PKTINFO_SIZE)
_GRO_CMSG_SPACE = socket.CMSG_SPACE(_int.size) + _PKTINFO_CMSG_SPACE
_NO_IFINDEX = bytes(4)
_SOURCE_CMSG_CACHE_MAX = 4096
# sendmsg from a source address that is no longer local: IPv4 says ENETUNREACH, IPv6 EINVAL
_SOURCE_GONE = (errno.ENETUNREACH, errno.EINVAL, errno.EADDRNOTAVAIL)


def normalize_endpoint(addr: tuple) -> Endpoint:
    """(host, port) from what recvfrom reports; v4-mapped IPv6 becomes plain IPv4."""
    host = addr[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, addr[1]


def source_cmsg(source: bytes) -> tuple[int, int, bytes] | None:
    """The cmsg that sends from `source` (a received in_pktinfo / in6_pktinfo), or None if it is
    neither. Like the kernel, the address is fixed and the routing picks the interface; only an
    IPv6 link-local address needs its interface (its scope) too."""
    if len(source) == IN_PKTINFO_SIZE:
        # ipi_spec_dst: the local address the datagram was for (the destination, for unicast)
        return (socket.IPPROTO_IP, IP_PKTINFO, _NO_IFINDEX + source[4:8] + _NO_IFINDEX)
    if len(source) == IN6_PKTINFO_SIZE:
        if source[0] == 0xFE and source[1] & 0xC0 == 0x80:  # fe80::/10 keeps its interface
            return (socket.IPPROTO_IPV6, IPV6_PKTINFO, source)
        return (socket.IPPROTO_IPV6, IPV6_PKTINFO, source[:16] + _NO_IFINDEX)
    return None


def source_address(source: bytes) -> tuple[str, int]:
    """(local address, interface index it arrived on) of a received pktinfo, for logs and
    checks."""
    if len(source) == IN_PKTINFO_SIZE:
        return socket.inet_ntop(socket.AF_INET, source[4:8]), _int.unpack_from(source)[0]
    return socket.inet_ntop(socket.AF_INET6, source[:16]), _int.unpack_from(source, 16)[0]


def endpoint_family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def unmap(host: str) -> str:
    """An IPv4-mapped IPv6 address is sent over the IPv4 socket (the v6 one is V6ONLY)."""
    if host[:7].lower() == "::ffff:":
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host


class UdpBind:
    """The device's UDP sockets. Call `open(port)` before use; `open` again to rebind."""

    def __init__(self, fwmark: int = 0, want_gso: bool = False, want_gro: bool = False) -> None:
        self.fwmark = fwmark
        self.want_gso = want_gso
        self.want_gro = want_gro
        self.sock4: socket.socket | None = None
        self.sock6: socket.socket | None = None
        self.port = 0
        self.gso = False  # UDP_SEGMENT usable on our sockets
        self._gro_sockets: set[socket.socket] = set()  # sockets with UDP_GRO on
        self._told_no_gso = self._told_no_gro = False
        self.send_errors = 0
        # the loop points this at the core's drop counter (`wgpy show` reports it)
        self.drops: Counter = Counter()
        # sources a send found no longer local; the loop drops them from the core's endpoints
        self.stale_sources: set[bytes] = set()
        self._source_cmsgs: dict[bytes, list[tuple[int, int, bytes]]] = {}

    # --- binding -------------------------------------------------------------------

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.sock4, self.sock6) if s is not None]

    def open(self, port: int) -> int:
        """(Re)bind both families to `port`; returns the port bound. On failure (e.g. port in
        use) raises OSError and leaves the previously bound sockets untouched."""
        attempts = 100 if port == 0 else 1
        last_error: OSError | None = None
        for _ in range(attempts):
            try:
                sock4, sock6, bound = self._bind_pair(port)
            except OSError as e:
                last_error = e
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            self.close()
            self.sock4, self.sock6, self.port = sock4, sock6, bound
            return bound
        assert last_error is not None
        raise last_error

    def _bind_pair(self, port: int) -> tuple[socket.socket | None, socket.socket | None, int]:
        sock4 = self._new_socket(socket.AF_INET)
        sock6: socket.socket | None = None
        try:
            if sock4 is not None:
                sock4.bind(("0.0.0.0", port))
                port = sock4.getsockname()[1]
            sock6 = self._new_socket(socket.AF_INET6)
            if sock6 is not None:
                sock6.bind(("::", port))
                port = sock6.getsockname()[1]
        except OSError:
            for s in (sock4, sock6):
                if s is not None:
                    self._gro_sockets.discard(s)
                    s.close()
            raise
        if sock4 is None and sock6 is None:
            raise OSError(errno.EAFNOSUPPORT, "neither IPv4 nor IPv6 UDP is available")
        return sock4, sock6, port

    def _new_socket(self, family: int) -> socket.socket | None:
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:
            if e.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                return None
            raise
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass
        for force in (33, 32):  # SO_RCVBUFFORCE / SO_SNDBUFFORCE: as root, past rmem_max
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
            except OSError:
                pass
        if self.fwmark:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.fwmark)
        self._setup_offloads(sock)
        return sock

    def _setup_offloads(self, sock: socket.socket) -> None:
        """Detect UDP_SEGMENT / enable UDP_GRO on a new socket; say so once if missing."""
        if self.want_gso:
            try:
                sock.getsockopt(SOL_UDP, UDP_SEGMENT)
                self.gso = True
            except OSError:
                if not self._told_no_gso:
                    self._told_no_gso = True
                    log.warning("UDP_SEGMENT unavailable; sending datagrams one by one")
                self.gso = False
        if self.want_gro:
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self._gro_sockets.add(sock)
            except OSError:
                if not self._told_no_gro:
                    self._told_no_gro = True
                    log.warning("UDP_GRO unavailable; receiving datagrams one by one")

    @property
    def gro(self) -> bool:
        return bool(self._gro_sockets)

    def set_mark(self, mark: int) -> None:
        """SO_MARK on the bound sockets (0 clears it); new sockets get it too."""
        for sock in self.sockets():
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        self.fwmark = mark

    def close(self) -> None:
        for sock in self.sockets():
            self._gro_sockets.discard(sock)
            sock.close()
        self.sock4 = self.sock6 = None

    # --- receiving -----------------------------------------------------------------

    def receive_batch(
        self, sock: socket.socket, out: list[tuple[bytes, Endpoint]], limit: int = 64
    ) -> None:
        """Append up to `limit` received datagrams (data, (host, port, source)) to `out`."""
        if sock in self._gro_sockets:
            self._receive_batch_gro(sock, out, limit)
            return
        recvmsg = sock.recvmsg
        append = out.append
        for _ in range(limit):
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, _PKTINFO_CMSG_SPACE,
                                                      MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                continue  # ICMP errors reported on the socket (ECONNREFUSED ...)
            # the only cmsg enabled here is the pktinfo
            if ancdata:
                append((data, (addr[0], addr[1], ancdata[0][2])))
            else:
                append((data, (addr[0], addr[1])))

    def _receive_batch_gro(
        self, sock: socket.socket, out: list[tuple[bytes, Endpoint]], limit: int
    ) -> None:
        recvmsg = sock.recvmsg
        append = out.append
        for _ in range(limit):
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, _GRO_CMSG_SPACE, MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                continue
            segment = 0
            source = None
            for level, kind, value in ancdata:
                if level == SOL_UDP:
                    if kind == UDP_GRO:
                        segment = _int.unpack_from(value)[0]
                else:  # IP_PKTINFO / IPV6_PKTINFO
                    source = value
            # one src object for the whole GRO read: the core compares it by identity first
            src = (addr[0], addr[1]) if source is None else (addr[0], addr[1], source)
            if segment and len(data) > segment:
                for offset in range(0, len(data), segment):
                    append((data[offset : offset + segment], src))
            else:
                append((data, src))

    # --- sending ---------------------------------------------------------------------

    def send(self, data: bytes, endpoint: Endpoint) -> bool:
        host = endpoint[0]
        if ":" in host:
            if host[:7].lower() == "::ffff:":
                host = unmap(host)
            sock = self.sock6 if ":" in host else self.sock4
        else:
            sock = self.sock4
        if sock is None:
            self.send_errors += 1
            return False
        if len(endpoint) > 2:
            return self._send_from([data], 0, endpoint, sock, (host, endpoint[1]))
        try:
            sock.sendto(data, MSG_DONTWAIT, (host, endpoint[1]))
            return True
        except BlockingIOError:
            self.drops[DropReason.SEND_BUFFER_FULL] += 1
            return False
        except OSError:  # unreachable, refused by a firewall ...: the datagram is lost
            self.send_errors += 1
            return False

    def _send_from(self, segments: list[bytes], segment: int, endpoint: Endpoint,
                   sock: socket.socket, address: tuple[str, int]) -> bool:
        """One sendmsg of `segments` (one datagram, or a GSO run cut at `segment` bytes) from
        the endpoint's source address; from the routing's choice if that address is gone."""
        source: bytes = endpoint[2]  # type: ignore[misc]
        cmsgs = self._source_cmsgs.get(source)
        if cmsgs is None:
            cmsg = source_cmsg(source)
            if cmsg is None or (cmsg[0] == socket.IPPROTO_IP) != (sock is self.sock4):
                cmsgs = []  # not a source for this socket: send as if there were none
            else:
                cmsgs = [cmsg]
            if len(self._source_cmsgs) >= _SOURCE_CMSG_CACHE_MAX:
                self._source_cmsgs.clear()
            self._source_cmsgs[source] = cmsgs
        has_source = bool(cmsgs)
        if segment:
            cmsgs = [*cmsgs, (SOL_UDP, UDP_SEGMENT, _u16.pack(segment))]
        try:
            sock.sendmsg(segments, cmsgs, MSG_DONTWAIT, address)
            return True
        except BlockingIOError:
            self.drops[DropReason.SEND_BUFFER_FULL] += len(segments)
            return False
        except OSError as e:
            if not has_source or e.errno not in _SOURCE_GONE:
                if segment:
                    raise  # the GSO caller decides
                self.send_errors += 1
                return False
        # the address left this host (or cannot reach the peer any more): as the kernel, forget
        # it and let routing choose
        if source not in self.stale_sources:
            log.debug("source %s no longer usable; sending from the routing's choice",
                      source_address(source)[0])
        self.stale_sources.add(source)
        return self._send_plain(segments, segment, sock, address)

    def _send_plain(self, segments: list[bytes], segment: int, sock: socket.socket,
                    address: tuple[str, int]) -> bool:
        try:
            if segment:
                sock.sendmsg(segments, [(SOL_UDP, UDP_SEGMENT, _u16.pack(segment))],
                             MSG_DONTWAIT, address)
            else:
                sock.sendto(segments[0], MSG_DONTWAIT, address)
            return True
        except BlockingIOError:
            self.drops[DropReason.SEND_BUFFER_FULL] += len(segments)
            return False
        except OSError:
            if segment:
                raise
            self.send_errors += 1
            return False

    def send_batch(self, datagrams: Iterable[tuple[bytes, Endpoint]]) -> None:
        """Send datagrams in order; with GSO, runs of equal-sized datagrams to one endpoint
        (the last of a run may be shorter) go out in one sendmsg."""
        if not self.gso:
            send = self.send
            for data, endpoint in datagrams:
                send(data, endpoint)
            return
        if datagrams.__class__ is not list:
            datagrams = list(datagrams)
        if len(datagrams) == 1:  # a lone packet (ping, an ACK): no run to look for
            data, endpoint = datagrams[0]
            self.send(data, endpoint)
            return
        self._send_batch_gso(datagrams)  # type: ignore[arg-type]

    def _send_batch_gso(self, datagrams: list[tuple[bytes, Endpoint]]) -> None:
        count = len(datagrams)
        i = 0
        while i < count:
            data, endpoint = datagrams[i]
            size = len(data)
            j = i + 1
            total = size
            while (
                j < count
                and j - i < GSO_MAX_SEGMENTS
                and datagrams[j][1] == endpoint
                and total + len(datagrams[j][0]) <= GSO_MAX_BYTES
            ):
                next_size = len(datagrams[j][0])
                if next_size > size:
                    break
                total += next_size
                j += 1
                if next_size < size:
                    break  # a shorter datagram ends a GSO run
            if j - i == 1:
                self.send(data, endpoint)
            else:
                self._send_gso([d for d, _ in datagrams[i:j]], size, endpoint)
            i = j

    def _send_gso(self, segments: list[bytes], segment: int, endpoint: Endpoint) -> None:
        """One sendmsg; the segments are the iovec (no joining copy), UDP_SEGMENT cuts them.
        A run shares one endpoint, so one source address (`_send_batch_gso` compares the
        whole endpoint)."""
        host = unmap(endpoint[0])
        sock = self.sock6 if ":" in host else self.sock4
        if sock is None:
            self.send_errors += len(segments)
            return
        address = (host, endpoint[1])
        try:
            if len(endpoint) > 2:
                self._send_from(segments, segment, endpoint, sock, address)
            else:
                self._send_plain(segments, segment, sock, address)
        except OSError as e:
            if e.errno in (errno.EIO, errno.EINVAL, errno.EOPNOTSUPP):
                # the route's device cannot segment: fall back for good
                log.warning("UDP GSO send failed (%s); sending datagrams one by one",
                            e.strerror)
                self.gso = False
                for data in segments:
                    self.send(data, endpoint)
            else:
                self.send_errors += len(segments)
