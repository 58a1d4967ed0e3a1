"""Many peers on one interface: configuration time, idle cost and per-packet cost (root).

    python3 bench/scale.py [--peers 10000] [--impl wgpy|wireguard-go|both] [--rest 5]
                           [--curve 1,100,1000,10000] [--packets 10000] [--rounds 15] [--no-daemons]

Two parts.

Daemons (wgpy-daemon and Debian's wireguard-go, each in a fresh namespace, configured with the
real `wg`): `wg setconf` of --peers peers (each a public key, an endpoint and a /32 + /128;
no traffic, no keepalive), `wg show IF dump` of them, then the process's CPU over --rest idle
seconds and its RSS growth per peer. The numbers come from bench/peers.py's `measure`.

Per-packet cost in process (like bench/core_transport.py): two sans-IO Devices after a real
handshake, each also holding N-1 other peers with a /32 and a /128 each, for each N of --curve.
The receiver's index table holds one entry per peer (the other peers' pending handshakes), so
both lookups a packet needs -- routing by destination among N /32s on the send side, the
receiver index among N indices on the receive side -- run against tables of N entries.
Prints µs/packet for send_packet and receive_datagram of 64 B inner packets (small, so the
per-packet overhead is not hidden behind the AEAD), best of --rounds.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import struct
import sys
import time
from dataclasses import asdict, dataclass

from wgpy.core import crypto
from wgpy.core.device import Device

A_ENDPOINT, B_ENDPOINT = ("192.0.2.1", 51820), ("192.0.2.2", 51821)
A_ADDRESS, B_ADDRESS = "10.9.0.1", "10.9.0.2"


@dataclass
class CurvePoint:
    peers: int
    send_us: float
    receive_us: float
    index_entries: int
    setup_seconds: float


def ipv4_packet(src: str, dst: str, size: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header + bytes(size - 20)


def filler_networks(i: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    """The /32 and /128 of the i-th extra peer (10.64.0.0/10, fd00:64::/64)."""
    v4 = ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.64.0.0")) + i + 1, 32))
    v6 = ipaddress.IPv6Network((int(ipaddress.IPv6Address("fd00:64::")) + i + 1, 128))
    return v4, v6


def scaled_pair(peers: int, seed: int = 1) -> tuple[Device, Device]:
    """Devices a and b with an established session, each holding peers-1 extra peers."""
    rng = random.Random(seed).randbytes
    a, b = Device(rng=rng), Device(rng=rng)
    keys = [crypto.generate_keypair(rng(32)) for _ in range(2)]
    a.set_private_key(keys[0][0])
    b.set_private_key(keys[1][0])
    peer_b, peer_a = a.add_peer(keys[1][1]), b.add_peer(keys[0][1])
    a.allowed_ips.insert(ipaddress.ip_network(f"{B_ADDRESS}/32"), peer_b)
    b.allowed_ips.insert(ipaddress.ip_network(f"{A_ADDRESS}/32"), peer_a)
    a.set_endpoint(peer_b, B_ENDPOINT)
    for device in (a, b):
        device.under_load.rate = 1 << 30  # the fill below is not a flood
        for i in range(peers - 1):
            extra = device.add_peer(rng(32))
            v4, v6 = filler_networks(i)
            device.allowed_ips.insert(v4, extra)
            device.allowed_ips.insert(v6, extra)
            device.set_endpoint(extra, ("192.0.2.200", 1024 + i % 60000))
    # b initiates to every extra peer: one pending-handshake index each in b's index table
    for i in range(peers - 1):
        b.send_packet(ipv4_packet(A_ADDRESS, str(filler_networks(i)[0].network_address), 64), 0.0)
    b.take_datagrams()
    a.send_packet(ipv4_packet(A_ADDRESS, B_ADDRESS, 64), 0.0)  # initiation, staged packet
    for _ in range(3):  # initiation -> response -> data
        for src, dst, src_endpoint in ((a, b, A_ENDPOINT), (b, a, B_ENDPOINT)):
            out = src.take_datagrams()
            for datagram, _ in out:
                dst.receive_datagram(datagram, src_endpoint, 0.0)
    if not b.take_packets():
        raise RuntimeError(f"handshake failed: {a.drops} {b.drops}")
    return a, b


def measure_once(a: Device, b: Device, packet: bytes, packets: int) -> tuple[float, float]:
    """Seconds per packet for a.send_packet and b.receive_datagram of `packets` packets."""
    send, receive = a.send_packet, b.receive_datagram
    start = time.perf_counter()
    for _ in range(packets):
        send(packet, 1.0)
    sent = time.perf_counter()
    out = a.take_datagrams()
    start_receive = time.perf_counter()
    for datagram, _ in out:
        receive(datagram, A_ENDPOINT, 1.0)
    end = time.perf_counter()
    if len(b.take_packets()) != packets:
        raise RuntimeError(f"lost packets: {b.drops}")
    return (sent - start) / packets, (end - start_receive) / packets


def per_packet_curve(counts: list[int], packets: int, rounds: int) -> list[CurvePoint]:
    """Best of `rounds`; each round measures every size in turn, so that load from elsewhere
    on a shared machine hits all sizes alike."""
    pairs, setups = [], []
    for count in counts:
        started = time.perf_counter()
        pairs.append(scaled_pair(count))
        setups.append(time.perf_counter() - started)
    packet = ipv4_packet(A_ADDRESS, B_ADDRESS, 64)
    best = [(float("inf"), float("inf")) for _ in counts]
    for _ in range(rounds):
        for i, (a, b) in enumerate(pairs):
            send, receive = measure_once(a, b, packet, packets)
            best[i] = (min(best[i][0], send), min(best[i][1], receive))
    return [CurvePoint(count, round(send * 1e6, 3), round(receive * 1e6, 3), len(b.indices),
                       round(setup, 2))
            for count, (send, receive), (_, b), setup in zip(counts, best, pairs, setups)]


def print_curve(points: list[CurvePoint]) -> None:
    first = points[0]
    print("| peers | send_packet µs | ratio to 1 peer | receive_datagram µs | ratio to 1 peer "
          "| receiver index entries |")
    print("|---:|---:|---:|---:|---:|---:|")
    for p in points:
        print(f"| {p.peers:,} | {p.send_us:.2f} | {p.send_us / first.send_us:.2f} "
              f"| {p.receive_us:.2f} | {p.receive_us / first.receive_us:.2f} "
              f"| {p.index_entries:,} |")


def daemon_figures(impls: tuple[str, ...], peers: int, rest: float) -> list[dict[str, object]]:
    from load_peers import measure
    from netns import Topology

    results = []
    for impl in impls:
        with Topology(f"wgs-scale-{impl[:4]}") as topo:
            result = asdict(measure(topo, impl, peers, rest))
        result["cpu_seconds_at_rest"] = round(result["cpu_at_rest_percent"] * rest / 100, 3)
        result["rest_seconds"] = rest
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def print_daemons(results: list[dict[str, object]]) -> None:
    print(f"| implementation | peers | wg setconf s | wg show dump s | CPU over "
          f"{results[0]['rest_seconds']} s idle | RSS per peer |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['impl']} | {r['peers']:,} | {r['setconf_seconds']:.2f} "
              f"| {r['get_seconds']:.2f} | {r['cpu_seconds_at_rest']:.2f} CPU-s "
              f"| {int(r['bytes_per_peer']) / 1024:.1f} KiB |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=int, default=10_000)
    parser.add_argument("--impl", choices=("wgpy", "wireguard-go", "both"), default="both")
    parser.add_argument("--rest", type=float, default=5.0)
    parser.add_argument("--curve", default="1,100,1000,10000")
    parser.add_argument("--packets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-daemons", action="store_true", help="only the in-process curve")
    args = parser.parse_args(argv)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load average {os.getloadavg()[0]:.2f}",
          flush=True)
    results = []
    if not args.no_daemons:
        impls = ("wgpy", "wireguard-go") if args.impl == "both" else (args.impl,)
        results = daemon_figures(impls, args.peers, args.rest)
    points = per_packet_curve([int(n) for n in args.curve.split(",")], args.packets,
                              args.rounds)
    for point in points:
        print(json.dumps(asdict(point)), flush=True)
    print()
    if results:
        print_daemons(results)
        print()
    print_curve(points)
    return 0


if __name__ == "__main__":
    sys.exit(main())
