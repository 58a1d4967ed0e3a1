"""In-memory stand-ins for the TUN and the UDP network, for tests without root.

They implement loop.py's `TunLike` and `NetLike` whole. They have real file descriptors
(socketpairs) only so that `DeviceLoop`'s epoll can wait on them; the data itself moves through
deques. One `MemoryNetwork` joins any number of
`MemoryUdp` binds, each with its own address, so two loops can talk to each other:

    net = MemoryNetwork()
    udp_a = MemoryUdp(net, "192.0.2.1"); udp_b = MemoryUdp(net, "192.0.2.2")
    loop_a = DeviceLoop(dev_a, MemoryTun(), udp_a) ...

`MemoryNetwork.inject` plays a third party on the wire (a flood of garbage, a spoofed source);
`MemoryUdp.move_to` changes a bind's address (roaming).
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Iterable

from wgpy.io.tun_linux import LinkGone
from wgpy.model import Endpoint


class _Wakeup:
    """A socketpair whose read end is readable exactly while something is queued."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self.armed = False

    def fileno(self) -> int:
        return self.reader.fileno()

    def arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.writer.send(b"x")

    def disarm(self) -> None:
        if self.armed:
            self.armed = False
            try:
                self.reader.recv(16)
            except BlockingIOError:
                pass

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class MemoryTun:
    """A TUN: the test `inject`s packets the host "sends" and collects what the loop `written`."""

    def __init__(self, name: str = "memtun0") -> None:
        self.name = name
        self.to_device: collections.deque[bytes] = collections.deque()
        self.written: list[bytes] = []
        self.deleted = False
        self.mtu = 1420  # what `ip link set mtu` would change
        self._wake = _Wakeup()

    def fileno(self) -> int:
        return self._wake.fileno()

    def current_mtu(self) -> int | None:
        return None if self.deleted else self.mtu

    def link_events(self) -> None:
        """No netlink here: the loop polls `current_mtu` (a test changes `mtu`)."""

    def inject(self, packet: bytes) -> None:
        self.to_device.append(packet)
        self._wake.arm()

    def delete(self) -> None:
        """Simulate `ip link del`: the next read fails as the kernel's would."""
        self.deleted = True
        self._wake.arm()

    def read_packet(self) -> bytes | None:
        if self.deleted:
            raise LinkGone(self.name)
        if self.to_device:
            packet = self.to_device.popleft()
            if not self.to_device:
                self._wake.disarm()
            return packet
        self._wake.disarm()
        return None

    def read_batch(self, limit: int) -> list[bytes]:
        packets = []
        for _ in range(limit):
            packet = self.read_packet()
            if packet is None:
                break
            packets.append(packet)
        return packets

    def write_packet(self, packet: bytes) -> None:
        if self.deleted:
            raise LinkGone(self.name)
        self.written.append(bytes(packet))

    def write_batch(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.write_packet(packet)

    def take_written(self) -> list[bytes]:
        out, self.written = self.written, []
        return out

    def close(self) -> None:
        self._wake.close()


class MemoryNetwork:
    """Delivers datagrams between `MemoryUdp` binds by (host, port); others vanish."""

    def __init__(self) -> None:
        self.binds: dict[Endpoint, MemoryUdp] = {}
        self._next_port = 40000
        self.delivered = 0
        self.lost = 0

    def allocate_port(self) -> int:
        self._next_port += 1
        return self._next_port

    def inject(self, data: bytes, src: Endpoint, dst: Endpoint) -> bool:
        bind = self.binds.get(dst)
        if bind is None:
            self.lost += 1
            return False
        self.delivered += 1
        bind._deliver(data, src)
        return True


class _MemorySocket:
    def __init__(self, owner: MemoryUdp) -> None:
        self.owner = owner
        self.queue: collections.deque[tuple[bytes, Endpoint]] = collections.deque()
        self.wake = _Wakeup()

    def fileno(self) -> int:
        return self.wake.fileno()


class MemoryUdp:
    """A UDP bind on `MemoryNetwork` with one host address (the API of `io.udp.UdpBind`)."""

    def __init__(self, network: MemoryNetwork, host: str) -> None:
        self.network = network
        self.host = host
        self.port = 0
        self.fwmark = 0
        self.sent: list[tuple[bytes, Endpoint]] = []  # everything sent, for assertions
        self._sock: _MemorySocket | None = None
        self.refuse_ports: set[int] = set()  # ports that fail with "address in use"
        self.drops: collections.Counter = collections.Counter()
        self.stale_sources: set[bytes] = set()  # never filled: memory sends have no source
        self.send_errors = 0  # never counted: a memory send does not fail

    def sockets(self) -> list[_MemorySocket]:
        return [self._sock] if self._sock is not None else []

    def open(self, port: int) -> int:
        if port == 0:
            port = self.network.allocate_port()
        if port in self.refuse_ports or (
            (self.host, port) in self.network.binds
            and self.network.binds[(self.host, port)] is not self
        ):
            raise OSError(98, "Address already in use")
        self._unregister()
        self.port = port
        if self._sock is None:
            self._sock = _MemorySocket(self)
        else:  # a rebind gets a fresh socket, as a real one would
            self._sock.wake.close()
            self._sock = _MemorySocket(self)
        self.network.binds[(self.host, port)] = self
        return port

    def move_to(self, host: str, port: int | None = None) -> None:
        """Roam: the bind now has another address (and optionally port)."""
        self._unregister()
        self.host = host
        if port is not None:
            self.port = port
        self.network.binds[(self.host, self.port)] = self

    def _unregister(self) -> None:
        if self.port and self.network.binds.get((self.host, self.port)) is self:
            del self.network.binds[(self.host, self.port)]

    def set_mark(self, mark: int) -> None:
        self.fwmark = mark

    def _deliver(self, data: bytes, src: Endpoint) -> None:
        if self._sock is not None:
            self._sock.queue.append((data, src))
            self._sock.wake.arm()

    def receive_batch(
        self, sock: _MemorySocket, out: list[tuple[bytes, Endpoint]], limit: int = 64
    ) -> None:
        queue = sock.queue
        for _ in range(limit):
            if not queue:
                break
            out.append(queue.popleft())
        if not queue:
            sock.wake.disarm()

    def send(self, data: bytes, endpoint: Endpoint) -> bool:
        self.sent.append((bytes(data), endpoint))
        return self.network.inject(bytes(data), (self.host, self.port), endpoint)

    def send_batch(self, datagrams: Iterable[tuple[bytes, Endpoint]]) -> None:
        for data, endpoint in datagrams:
            self.send(data, endpoint)

    def close(self) -> None:
        self._unregister()
        if self._sock is not None:
            self._sock.wake.close()
            self._sock = None
