"""The Linux TUN device: /dev/net/tun with IFF_TUN | IFF_NO_PI, non-blocking.

Packets are plain IP packets (no packet-information prefix). Optionally the device is opened
with IFF_VNET_HDR: then every read and write carries a 10-byte `virtio_net_hdr` in front, which
is what lets a later writer hand the kernel one coalesced TCP super-packet (GRO into the TUN).
Without offloads negotiated (TUNSETOFFLOAD) the header is all zero both ways.

When the interface is deleted (`ip link del`, which is how wg-quick stops a userspace
implementation) the kernel detaches our file: poll reports an error and read fails with EBADFD.
`read_packet` turns that into `LinkGone`.

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

from wgpy.io.tun_gro import coalesce

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
TUNGETFEATURES = 0x800454CF
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
# linux/sockios.h
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922

VNET_HDR_LEN = 10  # struct virtio_net_hdr (without num_buffers)
IFNAMSIZ = 16
MAX_PACKET = 65535

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
        self.closed = False
        self.udp_gro = False  # coalesce UDP too (tun_gro.py: measured slower, off by default)

    def current_mtu(self) -> int | None:
        """The interface's MTU now (it changes under us: wg-quick sets it after we start),
        or None if it cannot be read (the link is gone)."""
        try:
            return get_mtu(self.name)
        except OSError:
            return None

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
        """One IP packet, or None when nothing is queued. With vnet_hdr and no offloads the
        header is all zero and is cut off here; `read_raw` keeps it for an offload-aware
        reader."""
        try:
            data = os.read(self.fd, MAX_PACKET)
        except BlockingIOError:
            return None
        except OSError as e:
            raise self._failed(e, 1) from None
        return data[VNET_HDR_LEN:] if self.vnet_hdr else data

    def read_batch(self, limit: int) -> list[bytes]:
        """Up to `limit` IP packets, fewer when the queue runs dry (one call per batch)."""
        packets: list[bytes] = []
        append = packets.append
        read = os.read
        fd = self.fd
        try:
            if self.vnet_hdr:
                for _ in range(limit):
                    append(read(fd, MAX_PACKET)[VNET_HDR_LEN:])
            else:
                for _ in range(limit):
                    append(read(fd, MAX_PACKET))
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno in _LINK_GONE_ERRNOS and packets:
                return packets  # deliver what we have; the next read reports it
            failure = self._failed(e, 1)
            if isinstance(failure, TunDropped):
                failure.packets = packets
            raise failure from None
        return packets

    def read_raw(self) -> bytes | None:
        """One read as the kernel delivers it (vnet header included), None when empty."""
        try:
            return os.read(self.fd, MAX_PACKET)
        except BlockingIOError:
            return None
        except OSError as e:
            raise self._failed(e, 1) from None

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
        coalesced super-packet (see tun_gro.py). A failed write loses its packets, the rest
        are still written, then `TunDropped` says how many were lost."""
        fd = self.fd
        if self.vnet_hdr:
            writev = os.writev
            if len(packets) > 1:
                writes = coalesce(packets, self.udp_gro)
            else:
                writes = [[_ZERO_VNET_HDR, packets[0]]]
        else:
            writev = os.write  # type: ignore[assignment]
            writes = packets  # type: ignore[assignment]
        dropped = 0
        first_error: OSError | None = None
        for iovec in writes:
            try:
                writev(fd, iovec)
            except OSError as e:
                if e.errno in _LINK_GONE_ERRNOS:
                    raise LinkGone(self.name) from None
                # [vnet header, packet] or [vnet header, header, payload per segment]
                dropped += 1 if not self.vnet_hdr or len(iovec) == 2 else len(iovec) - 2
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
