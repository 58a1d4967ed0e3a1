"""The Linux TUN device: /dev/net/tun with IFF_TUN | IFF_NO_PI, non-blocking.

Packets are plain IP packets (no packet-information prefix). Optionally the device is opened
with IFF_VNET_HDR: then every read and write carries a 10-byte `virtio_net_hdr` in front, which
is what lets a later writer hand the kernel one coalesced TCP super-packet (GRO into the TUN).
Without offloads negotiated (TUNSETOFFLOAD) the header is all zero both ways.

When the interface is deleted (`ip link del`, which is how wg-quick stops a userspace
implementation) the kernel detaches our file: poll reports an error and read fails with EBADFD.
`read_packet` turns that into `LinkGone`.

TSO reads (`set_offloads(TSO_OFFLOADS)`, only with IFF_VNET_HDR): the kernel then hands the TUN
what it would hand a NIC that segments TCP itself -- one read of up to 64 KB holding a whole
run of a TCP stream (a "super-packet": gso_type TCPV4/TCPV6, gso_size = the MSS, the TCP
checksum partial), and TCP/UDP packets with their checksum left to the device (NEEDS_CSUM, no
GSO). `read_batch` cuts each super-packet into the IP packets a NIC would have sent and
completes every checksum (wgpy.fastpath.tso_segment: in C when built), so the loop and the core
see plain IP packets as before -- one syscall per ~45 of them instead of one each, and the
sender's kernel no longer segments. A read whose virtio_net_hdr the segmenter refuses (short,
an unknown GSO type, lengths that do not fit) is dropped and counted; the batch's other packets
go on (`TunDropped` with EBADMSG, counted by the loop as a failed TUN read). Headers are looked at
only once `set_offloads` turned offloads on (without, the kernel completes every packet and the
header is all zero): a TUN fd adopted with offloads already on (`from_fd`) must be told so with
`set_offloads` (wgpy-daemon sets them after adopting its fd).

Any other failed read or write loses that packet and nothing else: ENOBUFS or ENOMEM when the
kernel is short of memory, EIO while the interface is down, EINVAL for a packet it refuses, a
full queue. The TUN finishes the batch and then raises `TunDropped` (an OSError) saying how
many packets were lost; the loop counts them and goes on (wireguard-go logs a failed TUN write
and goes on too).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from wgpy import fastpath
from wgpy.io.rtnl import (
    RTMGRP_LINK,
    RouteEvents,
    link_index_and_mtu,
    namespace_id,
    same_namespace,
)
from wgpy.io.tun_gro import coalesce

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
TUNGETFEATURES = 0x800454CF
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNGETDEVNETNS = 0x54E3  # _IO('T', 227): an fd of the namespace the interface is in now
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
# linux/sockios.h
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922

# TSO for TCP over IPv4 and IPv6 (with the ECN variant: a super-packet that carries CWR is cut
# like the others, CWR on its first segment only), which needs checksum offload (TUN_F_CSUM).
# No USO: UDP is sent as the application wrote it.
TSO_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN

VNET_HDR_LEN = 10  # struct virtio_net_hdr (without num_buffers)
IFNAMSIZ = 16
MAX_PACKET = 65535
# A read with IFF_VNET_HDR: the header and an IP packet of up to 64 KB (a super-packet is
# one too; the kernel fails a read too short for the whole skb with EFAULT and drops it).
MAX_VNET_READ = VNET_HDR_LEN + MAX_PACKET

# errno values once the interface is gone (the kernel detached our file: EBADFD)
_LINK_GONE_ERRNOS = frozenset({errno.EBADFD, errno.ENXIO, errno.ENODEV})

_ifreq_flags = struct.Struct(f"{IFNAMSIZ}sH22x")
_ifreq_int = struct.Struct(f"{IFNAMSIZ}si20x")


class LinkGone(Exception):
    """The TUN interface was deleted; the daemon should exit."""


class TunDropped(OSError):
    """`dropped` packets were lost to a TUN error other than the link going away; the device
    goes on. For a read, `packets` holds those read before the error, to be handled as usual."""

    def __init__(self, errno_value: int, dropped: int,
                 packets: list[bytes] | None = None) -> None:
        super().__init__(errno_value, os.strerror(errno_value))
        self.dropped = dropped
        self.packets = packets if packets is not None else []


def tun_features() -> int:
    """The IFF_* flags this kernel's TUN driver supports (TUNGETFEATURES)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, TUNGETFEATURES, buf)
        return int.from_bytes(buf, "little")
    finally:
        os.close(fd)


def set_mtu(ifname: str, mtu: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCSIFMTU, _ifreq_int.pack(ifname.encode(), mtu))


def get_mtu(ifname: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out = fcntl.ioctl(s.fileno(), SIOCGIFMTU, _ifreq_int.pack(ifname.encode(), 0))
    return _ifreq_int.unpack(out)[1]


class TunDevice:
    """One queue of a TUN interface. `fileno()` is for the event loop's selector."""

    def __init__(self, fd: int, name: str, vnet_hdr: bool) -> None:
        self.fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr
        self.offloads = 0
        self.bad_reads = 0  # reads whose vnet header could not be used (dropped)
        self._pending: list[bytes] = []  # segments read_packet has not returned yet
        self.closed = False

    def current_mtu(self) -> int | None:
        """The interface's MTU now (it changes under us: wg-quick sets it after we start),
        or None if it cannot be read (the link is gone). Asked over netlink in the namespace
        the interface is in now: it may have been moved out of ours (rtnl.py)."""
        try:
            netns = self._current_netns()
            try:
                return link_index_and_mtu(self.current_name(), netns)[1]
            finally:
                if netns is not None:
                    os.close(netns)
        except OSError:
            return None

    def netns_fd(self) -> int:
        """A new fd of the network namespace the interface is in now (TUNGETDEVNETNS);
        EBADFD once the interface is deleted."""
        return fcntl.ioctl(self.fd, TUNGETDEVNETNS)

    def _current_netns(self) -> int | None:
        """`netns_fd()`, or None (our own namespace) where the kernel cannot say: before
        Linux 5.2 (ENOTTY/EINVAL), or without CAP_NET_ADMIN there (EPERM)."""
        try:
            return self.netns_fd()
        except OSError as e:
            if e.errno in _LINK_GONE_ERRNOS:
                raise
            return None

    def current_name(self) -> str:
        """The interface's name now (TUNGETIFF: `ip link set name` may have changed it)."""
        out = fcntl.ioctl(self.fd, TUNGETIFF, bytes(_ifreq_flags.size))
        return _ifreq_flags.unpack(out)[0].rstrip(b"\0").decode()

    def link_events(self) -> RouteEvents:
        """A netlink socket following this interface's link messages (its MTU, its leaving:
        deleted or moved) from the namespace it is in now (rtnl.py). Subscribed before the
        interface's index there is looked up, so no change in between goes unseen."""
        netns = self._current_netns()
        try:
            # (listening to all namespaces only when needed: it takes CAP_NET_BROADCAST)
            foreign = netns is not None and not same_namespace(netns)
            events = RouteEvents(0, RTMGRP_LINK, all_namespaces=foreign)
            try:
                if foreign:
                    events.nsid = namespace_id(netns)
                events.ifindex = link_index_and_mtu(self.current_name(), netns)[0]
            except BaseException:
                events.close()
                raise
        finally:
            if netns is not None:
                os.close(netns)
        return events

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, mtu: int = 1420, vnet_hdr: bool = False) -> TunDevice:
        """Create (or attach to) the TUN interface `name` and set its MTU.

        `vnet_hdr` is honoured only if the kernel supports IFF_VNET_HDR.
        """
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name:
            raise ValueError("interface name must be 1..15 bytes")
        if vnet_hdr and not tun_features() & IFF_VNET_HDR:
            vnet_hdr = False
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            out = fcntl.ioctl(fd, TUNSETIFF, _ifreq_flags.pack(name.encode(), flags))
            real_name = _ifreq_flags.unpack(out)[0].rstrip(b"\0").decode()
            if vnet_hdr:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            os.set_blocking(fd, False)
            set_mtu(real_name, mtu)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, real_name, vnet_hdr)

    @classmethod
    def from_fd(cls, fd: int) -> TunDevice:
        """Adopt an already configured TUN fd (WG_TUN_FD, passed by a backgrounding parent)."""
        out = fcntl.ioctl(fd, TUNGETIFF, _ifreq_flags.pack(b"", 0))
        raw_name, flags = _ifreq_flags.unpack(out)
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
        return cls(fd, raw_name.rstrip(b"\0").decode(), bool(flags & IFF_VNET_HDR))

    def set_offloads(self, offloads: int) -> bool:
        """TUNSETOFFLOAD (TUN_F_CSUM | TUN_F_TSO4 ...); only with vnet_hdr. False if refused."""
        if not self.vnet_hdr:
            return False
        try:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, offloads)
        except OSError:
            return False
        self.offloads = offloads
        return True

    # --- data ----------------------------------------------------------------------

    def fileno(self) -> int:
        return self.fd

    def read_packet(self) -> bytes | None:
        """One IP packet, or None when nothing is queued. With vnet_hdr the header is cut
        off; the other segments of a TSO super-packet wait for the next read_packet or
        read_batch."""
        if self._pending:
            return self._pending.pop(0)
        if self.vnet_hdr:
            packets = self.read_batch(1)
            if not packets:
                return None
            self._pending = packets[1:]
            return packets[0]
        try:
            return os.read(self.fd, MAX_PACKET)
        except BlockingIOError:
            return None
        except OSError as e:
            raise self._failed(e, 1) from None

    def read_batch(self, limit: int) -> list[bytes]:
        """IP packets, fewer when the queue runs dry (one call per batch): up to `limit`
        reads, and no more reads once `limit` packets are in (a TSO super-packet read last
        may bring the count over `limit` by up to ~45)."""
        packets: list[bytes] = []
        if self._pending:  # what read_packet left of a super-packet comes first
            packets = self._pending
            self._pending = []
        append = packets.append
        read = os.read
        fd = self.fd
        bad = 0
        try:
            if self.vnet_hdr and not self.offloads:
                # no offloads negotiated: the kernel completes every packet, the header is 0
                for _ in range(limit):
                    append(read(fd, MAX_VNET_READ)[VNET_HDR_LEN:])
            elif self.vnet_hdr:
                segment = fastpath.tso_segment  # looked up per batch: the daemon chooses
                extend = packets.extend
                for _ in range(limit):
                    data = read(fd, MAX_VNET_READ)
                    # flags & NEEDS_CSUM or a gso_type: the segmenter's work; an all-zero
                    # header (no offloads, or a packet with its checksums complete) is cut off
                    if len(data) > VNET_HDR_LEN and not data[1] and not data[0] & 1:
                        append(data[VNET_HDR_LEN:])
                        continue
                    try:
                        extend(segment(data))
                    except ValueError:
                        bad += 1
                    if len(packets) >= limit:
                        break
            else:
                for _ in range(limit):
                    append(read(fd, MAX_PACKET))
        except BlockingIOError:
            pass
        except OSError as e:
            self.bad_reads += bad
            if e.errno in _LINK_GONE_ERRNOS and packets:
                return packets  # deliver what we have; the next read reports it
            failure = self._failed(e, 1 + bad)
            if isinstance(failure, TunDropped):
                failure.packets = packets
            raise failure from None
        if bad:
            self.bad_reads += bad
            raise TunDropped(errno.EBADMSG, bad, packets)
        return packets

    def write_packet(self, packet: bytes) -> None:
        """Write one IP packet (a zero vnet header is prepended when vnet_hdr is on)."""
        try:
            if self.vnet_hdr:
                os.writev(self.fd, (_ZERO_VNET_HDR, packet))
            else:
                os.write(self.fd, packet)
        except OSError as e:  # EAGAIN too: the kernel's queue is full, drop as a NIC would
            raise self._failed(e, 1) from None

    def write_batch(self, packets: list[bytes]) -> None:
        """Write packets in order; with vnet_hdr, TCP segments of a flow go as one
        coalesced super-packet (fastpath.gro_coalesce: tun_gro.py's rules, in C when built;
        each write one buffer). A failed write loses its packets, the rest are still
        written, then `TunDropped` says how many were lost."""
        fd = self.fd
        write: Callable[[int, Any], int]
        writes: list[Any]  # buffers for os.write or iovec lists for os.writev
        if not self.vnet_hdr:
            write, writes = os.write, packets
        elif len(packets) == 1:
            write, writes = os.writev, [[_ZERO_VNET_HDR, packets[0]]]
        elif fastpath.IMPLEMENTATION != "c":
            # tun_gro.coalesce's iovec lists: in pure Python joining each write into one
            # buffer (as _purepath.gro_coalesce does) would only add a copy
            write, writes = os.writev, coalesce(packets, fastpath.checksums_valid)
        else:
            write, writes = os.write, fastpath.gro_coalesce(packets)
        dropped = 0
        first_error: OSError | None = None
        item: Any
        for item in writes:
            try:
                write(fd, item)
            except OSError as e:
                if e.errno in _LINK_GONE_ERRNOS:
                    raise LinkGone(self.name) from None
                dropped += _packets_in(item) if self.vnet_hdr else 1
                if first_error is None:
                    first_error = e
        if first_error is not None:
            raise self._failed(first_error, dropped)

    def _failed(self, error: OSError, dropped: int) -> Exception:
        if error.errno in _LINK_GONE_ERRNOS:
            return LinkGone(self.name)
        return TunDropped(error.errno or errno.EIO, dropped)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


_ZERO_VNET_HDR = bytes(VNET_HDR_LEN)
_vnet_sizes = struct.Struct("<HH").unpack_from  # hdr_len, gso_size


def _packets_in(write: bytes | list) -> int:
    """How many packets a write into a vnet_hdr TUN carried: a vnet header and one packet or
    a GSO super-packet (one buffer, or an iovec list [header, packet] or [vnet header, header,
    payload per segment])."""
    if isinstance(write, list):
        return 1 if len(write) == 2 else len(write) - 2
    if len(write) < VNET_HDR_LEN or not write[1]:
        return 1
    header_len, gso_size = _vnet_sizes(write, 2)
    return max(1, -(-(len(write) - VNET_HDR_LEN - header_len) // max(gso_size, 1)))
