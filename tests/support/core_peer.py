"""A minimal peer built from the sans-IO core and one UDP socket (no TUN), for interop tests.

Run inside a namespace: `python core_peer.py PRIVATE_B64 PEER_PUB_B64 BIND_PORT PEER_HOST PEER_PORT
MODE [PSK_B64]`. MODE `ping`: send ICMP echo requests to 10.77.0.1 until a reply arrives (we initiate).
MODE `answer`: wait for echo requests from 10.77.0.1 and answer them (the peer initiates).
Prints one line `OK <handshakes>` and exits 0 on success; exits 1 after 15 s.
"""

from __future__ import annotations

import ipaddress
import secrets
import select
import socket
import struct
import sys
import time

from packets import checksum  # tests/support, this script's own folder

from wgpy.core.device import Device
from wgpy.keys import key_from_base64

OUR_ADDRESS = "10.77.0.2"
PEER_ADDRESS = "10.77.0.1"


def icmp_packet(src: str, dst: str, kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    icmp = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0x4000, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


def main() -> int:
    private, peer_public, bind_port, peer_host, peer_port, mode = sys.argv[1:7]
    psk = sys.argv[7] if len(sys.argv) > 7 else None
    device = Device(rng=secrets.token_bytes)
    device.wall_offset = time.time() - time.monotonic()
    now = time.monotonic()
    device.set_private_key(key_from_base64(private))
    peer = device.add_peer(key_from_base64(peer_public))
    if psk:
        peer.set_preshared_key(key_from_base64(psk))
    device.allowed_ips.insert(ipaddress.ip_network(f"{PEER_ADDRESS}/32"), peer)
    device.set_endpoint(peer, (peer_host, int(peer_port)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(bind_port)))
    deadline = time.monotonic() + 15
    next_ping = 0.0
    seq = 0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if mode == "ping" and now >= next_ping:
            seq += 1
            device.send_packet(icmp_packet(OUR_ADDRESS, PEER_ADDRESS, 8, 7, seq, b"wgpy"), now)
            next_ping = now + 0.5
        for datagram, endpoint in device.take_datagrams():
            sock.sendto(datagram, endpoint)
        wake = device.next_deadline()
        timeout = 0.1 if wake is None else max(0.0, min(0.1, wake - now))
        readable, _, _ = select.select([sock], [], [], timeout)
        now = time.monotonic()
        if readable:
            data, address = sock.recvfrom(65535)
            device.receive_datagram(data, address[:2], now)
        device.on_timer(now)
        packets = device.take_packets()
        for packet in packets:
            kind = packet[20]
            if mode == "ping" and kind == 0:
                print("OK", peer.last_handshake is not None, flush=True)
                return 0
            if mode == "answer" and kind == 8:
                ident, sequence = struct.unpack("!HH", packet[24:28])
                device.send_packet(
                    icmp_packet(OUR_ADDRESS, PEER_ADDRESS, 0, ident, sequence, packet[28:]), now
                )
    print("TIMEOUT", dict(device.drops), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
