"""Handshakes per second per core: the sans-IO core in process, and wgpy-daemon against
wireguard-go as responders (root for the daemon part).

    python3 bench/handshakes.py [--peers 1000] [--rounds 3] [--rate 450] [--seconds 4]
                                [--impl wgpy|wireguard-go|both] [--no-daemons]

In process: one responder Device with --peers peers, and one initiator Device per peer. Each
round every initiator starts a handshake (send_packet with its session expired), the responder
consumes the initiation and answers, the initiator consumes the response. Reports µs per
handshake on each side (best round) and the responder's handshakes/s on one core, next to the
floor of the X25519 work alone (a responder does one key generation and three DH; an initiator
one generation and two DH, the static-static DH being precomputed per peer).

Daemons: the same initiators, built with the core before the clock starts, produce valid
initiations (mac1 for the responder's key, increasing TAI64N per peer, a fresh ephemeral each).
A blaster in a second namespace sends them over a veth at --rate per second for --seconds and
counts the handshake responses (and cookie replies) that come back; the responder's CPU time
(utime + stime from /proc) over the same span gives handshakes per CPU-second, i.e. per core.
The offered rate stays below both implementations' "under load" threshold (wireguard-go: a
backlog of 512 queued handshakes; wgpy: 512 handshake messages in a second), so every
initiation is answered with a response, and the figure compares the work per handshake.
--rate 0 instead keeps a window of --window initiations in flight (a saturating closed loop);
then wgpy turns to cookie replies above 512/s by design, and the counts show it.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import random
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from procstat import cpu_seconds

from wgpy.core import crypto
from wgpy.core.device import Device

RESPONDER = ("10.96.0.1", 51820)
BLASTER_ADDRESS = "10.96.0.2"
TUNNEL_RESPONDER = "10.97.0.1"
ROUND_SECONDS = 200.0  # > REJECT_AFTER_TIME: each round the initiators' sessions have expired
INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE = 148, 92, 64


def tunnel_packet(src: str, dst: str) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                       ipaddress.IPv4Address(src).packed,
                       ipaddress.IPv4Address(dst).packed) + bytes(8)


def tunnel_address(i: int) -> str:
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.98.0.0")) + i + 1))


def initiators(responder_public: bytes, count: int, rng_seed: int = 7) -> list[Device]:
    """One Device per initiator identity, each with the responder as its only peer."""
    rng = random.Random(rng_seed).randbytes
    devices = []
    for _ in range(count):
        device = Device(rng=rng)
        device.set_private_key(crypto.generate_keypair(rng(32))[0])
        peer = device.add_peer(responder_public)
        device.allowed_ips.insert(ipaddress.ip_network(f"{TUNNEL_RESPONDER}/32"), peer)
        device.set_endpoint(peer, RESPONDER)
        devices.append(device)
    return devices


def initiate(device: Device, i: int, now: float) -> bytes:
    device.send_packet(tunnel_packet(tunnel_address(i), TUNNEL_RESPONDER), now)
    out = device.take_datagrams()
    if len(out) != 1 or out[0][0][0] != 1:
        raise RuntimeError(f"expected one initiation, got {len(out)}: {device.drops}")
    return out[0][0]


# --- in process ------------------------------------------------------------------------------


@dataclass
class CoreResult:
    peers: int
    initiator_create_us: float
    responder_us: float
    initiator_consume_us: float
    responder_handshakes_per_second: float
    responder_x25519_floor_us: float
    initiator_x25519_floor_us: float


def x25519_floor(generations: int, exchanges: int, repeat: int = 100, trials: int = 5) -> float:
    """µs of `generations` key generations (private bytes -> key + public) and `exchanges` DH
    with an already loaded key; best of `trials`."""
    seed = os.urandom(32)
    other = X25519PublicKey.from_public_bytes(X25519PrivateKey.generate().public_key()
                                              .public_bytes_raw())
    key = X25519PrivateKey.from_private_bytes(seed)
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeat):
            for _ in range(generations):
                X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
            for _ in range(exchanges):
                key.exchange(other)
        best = min(best, (time.perf_counter() - start) / repeat * 1e6)
    return best


def core_rate(peers: int, rounds: int) -> CoreResult:
    rng = random.Random(3).randbytes
    responder = Device(rng=rng)
    responder_private, responder_public = crypto.generate_keypair(rng(32))
    responder.set_private_key(responder_private)
    responder.under_load.rate = 1 << 30  # measure the handshake work, not the cookie defence
    devices = initiators(responder_public, peers)
    for device in devices:
        responder.add_peer(device.public_key)  # type: ignore[arg-type]
    sources = [(f"10.{100 + i // 250}.{i % 250}.2", 40000 + i) for i in range(peers)]
    best = [float("inf")] * 3
    for round_number in range(1, rounds + 1):
        now = round_number * ROUND_SECONDS
        start = time.perf_counter()
        initiations = [initiate(device, i, now) for i, device in enumerate(devices)]
        created = time.perf_counter()
        receive = responder.receive_datagram
        for initiation, source in zip(initiations, sources):
            receive(initiation, source, now)
        answered = time.perf_counter()
        responses = responder.take_datagrams()
        if len(responses) != peers or any(r[0][0] != 2 for r in responses):
            raise RuntimeError(f"responder answered {len(responses)}: {responder.drops}")
        start_consume = time.perf_counter()
        for device, (response, _) in zip(devices, responses):
            device.receive_datagram(response, RESPONDER, now)
        consumed = time.perf_counter()
        for device in devices:
            device.take_datagrams()  # the staged packet, now encrypted
        best = [min(best[0], (created - start) / peers), min(best[1], (answered - created) / peers),
                min(best[2], (consumed - start_consume) / peers)]
    return CoreResult(
        peers, round(best[0] * 1e6, 1), round(best[1] * 1e6, 1), round(best[2] * 1e6, 1),
        round(1 / best[1]), round(x25519_floor(1, 3), 1), round(x25519_floor(1, 2), 1),
    )


# --- blaster (runs inside the client namespace) ----------------------------------------------


def blast(messages: list[bytes], host: str, port: int, rate: float, seconds: float,
          window: int) -> dict[str, float]:
    """Send initiations (paced at `rate`/s, or keeping `window` in flight when rate is 0) and
    count what comes back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((BLASTER_ADDRESS, 0))
    sock.connect((host, port))
    sock.setblocking(False)
    counts = {"sent": 0, "responses": 0, "cookie_replies": 0, "other": 0}
    start = time.monotonic()
    deadline = start + seconds
    last_progress = start
    in_flight = 0
    next_index = 0

    def drain() -> None:
        nonlocal in_flight, last_progress
        while True:
            try:
                data = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            kind = data[0] if data else 0
            key = {2: "responses", 3: "cookie_replies"}.get(kind, "other")
            counts[key] += 1
            in_flight = max(0, in_flight - 1)
            last_progress = time.monotonic()

    while True:
        now = time.monotonic()
        if now >= deadline or next_index >= len(messages):
            break
        if rate > 0:
            due = min(len(messages), int((now - start) * rate) + 1)
            while next_index < due:
                sock.send(messages[next_index])
                next_index += 1
                counts["sent"] += 1
            wait = (next_index / rate) - (time.monotonic() - start)
        else:
            if now - last_progress > 0.1:
                in_flight = 0  # lost ones: do not stall
                last_progress = now
            while in_flight < window and next_index < len(messages):
                sock.send(messages[next_index])
                next_index += 1
                in_flight += 1
                counts["sent"] += 1
            wait = 0.01
        select.select([sock], [], [], max(0.0, wait))
        drain()
    sent_for = time.monotonic() - start
    settle = time.monotonic() + 0.5  # answers still on their way
    while time.monotonic() < settle:
        select.select([sock], [], [], 0.05)
        drain()
    return {**counts, "seconds": round(sent_for, 3)}


# --- daemons ------------------------------------------------------------------------------------


def responder_config(private_b64: str, publics: list[bytes]) -> str:
    lines = ["[Interface]", f"PrivateKey = {private_b64}", f"ListenPort = {RESPONDER[1]}", ""]
    for i, public in enumerate(publics):
        lines += ["[Peer]", f"PublicKey = {base64.b64encode(public).decode()}",
                  f"AllowedIPs = {tunnel_address(i)}/32", ""]
    return "\n".join(lines)


def prebuilt_initiations(devices: list[Device], count: int) -> list[bytes]:
    """At least `count` initiations, round-robin over the initiators (one peer's initiations
    are len(devices) messages apart), each round a session-expiry later."""
    rounds = max(1, count // len(devices) + 1)
    return [initiate(device, i, (k + 1) * ROUND_SECONDS)
            for k in range(rounds) for i, device in enumerate(devices)]


def measure_responder(topo: Any, impl: str, private_b64: str, devices: list[Device],
                      messages: list[bytes], rate: float, seconds: float,
                      window: int) -> dict[str, Any]:
    """Start `impl` as the responder in `topo`, blast `messages` at it from a second namespace,
    return the counts and the responder's CPU time."""
    server, client = topo.netns("r"), topo.netns("c")
    topo.veth(server, client, [f"{RESPONDER[0]}/24"], [f"{BLASTER_ADDRESS}/24"])
    ifname = topo.ifname()
    process = (topo.start_wgpy_daemon(server, ifname) if impl == "wgpy"
               else topo.start_wireguard_go(server, ifname))
    config = topo.write_file(responder_config(
        private_b64, [d.public_key for d in devices]))  # type: ignore[misc]
    topo.wg(server, "setconf", ifname, str(config))
    server.run(["ip", "link", "set", ifname, "up"])
    blob = topo.write_file("", name="initiations")
    blob.write_bytes(b"".join(messages))
    time.sleep(0.5)
    cpu_before = cpu_seconds(process.pid)
    output = client.run(
        [sys.executable, str(Path(__file__).resolve()), "--blast", str(blob),
         "--rate", str(rate), "--seconds", str(seconds), "--window", str(window)],
        timeout=seconds + 30,
    ).stdout
    cpu_used = cpu_seconds(process.pid) - cpu_before
    counts = json.loads(output.strip().splitlines()[-1])
    answered = counts["responses"]
    return {
        "impl": impl, "peers": len(devices), "offered_rate": rate, **counts,
        "responses_per_second": round(answered / counts["seconds"], 1),
        "responder_cpu_seconds": round(cpu_used, 3),
        "handshakes_per_cpu_second": round(answered / cpu_used) if cpu_used else None,
        "ifname": ifname, "server": server,
    }


def daemon_rate(impls: tuple[str, ...], peers: int, rate: float, seconds: float,
                window: int) -> list[dict[str, Any]]:
    from netns import Topology

    private_b64, public_b64 = Topology.genkey()
    devices = initiators(base64.b64decode(public_b64), peers)
    messages = prebuilt_initiations(devices, int((rate or 3000) * seconds))
    results = []
    for impl in impls:
        with Topology(f"wgs-hs-{impl[:4]}") as topo:
            result = measure_responder(topo, impl, private_b64, devices, messages, rate,
                                       seconds, window)
        del result["ifname"], result["server"]
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=450.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--impl", choices=("wgpy", "wireguard-go", "both"), default="both")
    parser.add_argument("--no-daemons", action="store_true")
    parser.add_argument("--blast", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.blast:
        data = Path(args.blast).read_bytes()
        messages = [data[i:i + INITIATION_SIZE] for i in range(0, len(data), INITIATION_SIZE)]
        print(json.dumps(blast(messages, RESPONDER[0], RESPONDER[1], args.rate, args.seconds,
                               args.window)))
        return 0
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load average {os.getloadavg()[0]:.2f}",
          flush=True)
    core = core_rate(args.peers, args.rounds)
    print(json.dumps(asdict(core)), flush=True)
    results = []
    if not args.no_daemons:
        impls = ("wgpy", "wireguard-go") if args.impl == "both" else (args.impl,)
        results = daemon_rate(impls, args.peers, args.rate, args.seconds, args.window)
    print()
    print(f"core, in process ({core.peers:,} peers): responder {core.responder_us:.0f} µs per "
          f"handshake = {core.responder_handshakes_per_second:,.0f} handshakes/s on one core "
          f"(X25519 alone: {core.responder_x25519_floor_us:.0f} µs); initiator "
          f"{core.initiator_create_us:.0f} + {core.initiator_consume_us:.0f} µs "
          f"(X25519 alone: {core.initiator_x25519_floor_us:.0f} µs)")
    if results:
        print()
        print("| responder | offered /s | sent | responses | cookie replies | responses/s "
              "| responder CPU-s | handshakes per CPU-second |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['impl']} | {r['offered_rate'] or 'window ' + str(args.window)} "
                  f"| {r['sent']} | {r['responses']} | {r['cookie_replies']} "
                  f"| {r['responses_per_second']} | {r['responder_cpu_seconds']} "
                  f"| {r['handshakes_per_cpu_second']} |")
        if len(results) == 2 and all(r["handshakes_per_cpu_second"] for r in results):
            ratio = results[0]["handshakes_per_cpu_second"] / results[1]["handshakes_per_cpu_second"]  # type: ignore[operator]
            print(f"\nhandshakes per CPU-second, {results[0]['impl']} / {results[1]['impl']}: "
                  f"{ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
