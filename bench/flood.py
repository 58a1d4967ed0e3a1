"""A UDP flood against a WireGuard port, for the hostile-network tests (tests/e2e/test_hostile_*)
and by hand. Run it inside a test network namespace only; it prints one JSON line.

    python3 bench/flood.py initiations HOST PORT SERVER_PUBKEY_B64 [--seconds S] [--rate N]
    python3 bench/flood.py malformed HOST PORT - [--seconds S]
    python3 bench/flood.py replay HOST PORT - --packets FILE [--seconds S]

initiations: handshake initiations with a valid mac1 for the server's public key (so they pass
  the cheap check and reach the cookie / DH logic) and random contents; cookie replies that come
  back are counted.
malformed: datagrams of every wrong shape (empty, unknown type, wrong size per type, reserved
  bytes set, truncated, unknown receiver index, random bytes).
replay: the datagrams in FILE (hex, one per line: captured real transport packets), resent.

--rate 0 (default) is as fast as one Python socket goes; a rate is paced in bursts of --burst
datagrams (256; 1 spreads them evenly); SIGTERM ends the flood early (the JSON line is still
printed).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wgpy.core.cookie import mac1_key

INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE, TRANSPORT_MIN = 148, 92, 64, 32


def initiations(server_public_key: bytes, count: int = 512) -> list[bytes]:
    key = mac1_key(server_public_key)
    messages = []
    for _ in range(count):
        body = bytearray(b"\x01\x00\x00\x00" + os.urandom(INITIATION_SIZE - 4 - 32))
        mac1 = hashlib.blake2s(bytes(body), key=key, digest_size=16).digest()
        messages.append(bytes(body) + mac1 + bytes(16))
    return messages


def malformed() -> list[bytes]:
    shapes: list[bytes] = [b"", b"\x01", b"\x04", b"\x00" * 148]
    for kind in (0, 5, 6, 0x7F, 0xFF):
        shapes.append(bytes([kind]) + bytes(3) + os.urandom(60))
    for kind, size in ((1, INITIATION_SIZE), (2, RESPONSE_SIZE), (3, COOKIE_REPLY_SIZE)):
        for wrong in (size - 1, size + 1, 4, size * 2):
            shapes.append(bytes([kind]) + bytes(3) + os.urandom(wrong - 4))
        shapes.append(bytes([kind, 1, 0, 0]) + os.urandom(size - 4))  # reserved bits set
        shapes.append(bytes([kind]) + bytes(3) + os.urandom(size - 4))  # right size, bad mac1
    shapes.append(b"\x04\x00\x00\x00" + os.urandom(12))  # transport, truncated
    shapes.append(b"\x04\x00\x01\x00" + os.urandom(60))  # transport, reserved set
    for _ in range(8):  # transport with unknown receiver indexes
        shapes.append(b"\x04\x00\x00\x00" + os.urandom(4) + bytes(8) + os.urandom(48))
    for size in (1, 16, 33, 100, 1500):
        shapes.append(os.urandom(size))
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=("initiations", "malformed", "replay"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("server_public_key", help="base64 (initiations) or -")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=0.0, help="datagrams/s, 0 = max")
    parser.add_argument("--burst", type=int, default=256,
                        help="with --rate: datagrams per paced burst (1 = evenly spread)")
    parser.add_argument("--packets", help="replay: file of hex datagrams")
    args = parser.parse_args(argv)

    if args.kind == "initiations":
        messages = initiations(base64.b64decode(args.server_public_key))
    elif args.kind == "malformed":
        messages = malformed()
    else:
        messages = [bytes.fromhex(line) for line in Path(args.packets).read_text().split()]
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    target = (args.host, args.port)
    sendto, recv = sock.sendto, sock.recv
    sent = failed = cookie_replies = 0
    count = len(messages)
    start = time.monotonic()
    end = start + args.seconds
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
    every = max(1, args.burst) if args.rate else 256  # look at the clock every so many sends
    i = 0
    while True:
        if i % every == 0:
            now = time.monotonic()
            if now >= end or stopped:
                break
            if args.rate:  # paced in bursts of `every`
                ahead = start + i / args.rate - now
                if ahead > 0:
                    time.sleep(ahead)
            try:
                while True:
                    reply = recv(2048)
                    if reply[:1] == b"\x03" and len(reply) == COOKIE_REPLY_SIZE:
                        cookie_replies += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pass
        try:
            sendto(messages[i % count], target)
            sent += 1
        except OSError:
            failed += 1  # ENOBUFS/EAGAIN: the sender outran its own queue
        i += 1
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    try:
        while True:
            reply = recv(2048)
            if reply[:1] == b"\x03" and len(reply) == COOKIE_REPLY_SIZE:
                cookie_replies += 1
    except OSError:
        pass
    print(json.dumps({"kind": args.kind, "sent": sent, "failed": failed,
                      "seconds": round(elapsed, 3), "rate": round(sent / elapsed),
                      "cookie_replies": cookie_replies, "shapes": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
