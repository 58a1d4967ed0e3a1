"""The core's cost under a handshake flood from one address (the e2e version is
tests/e2e/test_hostile_flood.py).

A cookie reply costs an XChaCha20-Poly1305 seal (tens of microseconds here, against ~3 us for
the mac1 check). If every initiation with a valid mac1 from an unproven source is answered,
one sender keeps the daemon's single thread busy and the kernel's socket queue then drops the
legitimate peers' packets with the flood's. So under load the per-source rate limiter (kernel
ratelimiter semantics, 20/s burst 5) bounds the cookie replies too, before any crypto beyond
mac1 -- the issue asks for "per-source-IP rate limiting of handshake processing and of cookie
replies"."""

from __future__ import annotations

import hashlib
import os
import secrets

from wgpy.core.cookie import mac1_key
from wgpy.core.device import Device
from wgpy.core.ratelimiter import PACKETS_BURSTABLE, PACKETS_PER_SECOND
from wgpy.errors import DropReason
from wgpy.keys import generate_private_key, public_key

NOW = 1000.0


def initiation_with_valid_mac1(server_public: bytes) -> bytes:
    body = b"\x01\x00\x00\x00" + os.urandom(148 - 4 - 32)
    mac1 = hashlib.blake2s(body, key=mac1_key(server_public), digest_size=16).digest()
    return body + mac1 + bytes(16)


def flooded_device() -> tuple[Device, bytes]:
    device = Device(rng=secrets.token_bytes)
    private = generate_private_key()
    device.set_private_key(private, NOW)
    return device, public_key(private)


def test_cookie_replies_to_one_source_are_rate_limited_under_load() -> None:
    device, server_public = flooded_device()
    attacker = ("192.0.2.66", 40000)
    sent = 2000
    for i in range(sent):  # 2000 in one second: 4x the under-load threshold
        device.receive_datagram(initiation_with_valid_mac1(server_public), attacker,
                                NOW + i / sent)
    cookie_replies = [d for d, dst in device.to_network if d[0] == 3 and dst == attacker]
    handshake_work = device.drops[DropReason.DECRYPT_HANDSHAKE]
    assert handshake_work < device.under_load_rate  # no DH work once under load
    # at most the limiter's budget of cookie replies for this source (plus what was answered
    # before the load detector tripped: nothing, those got DH work instead)
    assert len(cookie_replies) <= PACKETS_PER_SECOND + PACKETS_BURSTABLE, (
        f"{len(cookie_replies)} cookie replies to one source in one second")
    # another source is not starved by the first one's flood
    device.to_network.clear()
    device.receive_datagram(initiation_with_valid_mac1(server_public), ("198.51.100.7", 5),
                            NOW + 1.0)
    assert [d[0] for d, _ in device.to_network] == [3]


def test_under_load_flood_state_is_bounded() -> None:
    device, server_public = flooded_device()
    for i in range(3000):  # many sources, many ports
        source = (f"10.{(i >> 8) & 255}.{i & 255}.1", 1024 + i)
        device.receive_datagram(initiation_with_valid_mac1(server_public), source,
                                NOW + i / 3000)
    assert device.indices == {}  # nothing of the flood holds an index
    assert len(device.rate_limiter._entries) <= 3000
    assert len(device.rate_limiter) <= device.rate_limiter.max_entries
    # the next episode of load prunes the sources idle for more than a second
    for i in range(device.under_load_rate + 10):
        device.receive_datagram(initiation_with_valid_mac1(server_public), ("10.0.0.1", 1),
                                NOW + 10 + i / 10000)
    assert len(device.rate_limiter) <= 1


def test_private_key_change_lets_the_next_handshake_go_at_once() -> None:
    """Kernel (wg_noise_expire_current_peer_keypairs resets last_sent_handshake) and
    wireguard-go (ExpireCurrentKeypairs) both allow a new initiation right after the private
    key changed; otherwise traffic waits up to REKEY_TIMEOUT for the first one."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from pairlib import Pair

    pair = Pair(b_knows_a_endpoint=True)
    pair.a_sends(b"first")
    assert pair.b.received
    pair.clock.advance(1.0)
    private = pair.a.private_key
    pair.a.device.set_private_key(generate_private_key(), pair.now)
    pair.a.device.set_private_key(private, pair.now)
    pair.clock.advance(0.1)
    pair.b.received.clear()
    pair.a_sends(b"after the key change")
    assert [p[20:] for p in pair.b.received] == [b"after the key change"]


class _NoMemo(dict):
    """A `Device._refused_until` that remembers nothing: the device without the fast path."""

    def __setitem__(self, key: str, value: float) -> None:
        pass


def test_flood_fast_path_refuses_exactly_what_the_rate_limiter_refuses() -> None:
    """Refused sources are remembered until their bucket refills (Device._refused_until) and
    dropped before mac1 meanwhile; a device that never remembers must answer every message of
    the same flood the same way: a source with a token is never refused by the memo."""
    import random

    private = generate_private_key()
    server_public = public_key(private)
    devices = []
    for memo in (True, False):
        device = Device(rng=random.Random(7).randbytes)
        device.set_private_key(private, NOW)
        if not memo:
            device._refused_until = _NoMemo()
        devices.append(device)
    fast, reference = devices
    sources = [("192.0.2.66", 40000), ("192.0.2.66", 40001), ("2001:db8::1", 5),
               ("2001:db8::2", 6), ("198.51.100.9", 7)]
    choose = random.Random(3)
    now = NOW
    answered = 0
    for _ in range(6000):
        # mostly a flood (10,000/s, past the under-load threshold), sometimes a pause of
        # exactly a token's worth or more, so that buckets refill at and around the memo's
        # deadline, and now and then one long enough for the load to end
        now += choose.choice([0.0001] * 1500 + [0.05, 0.0499999, 0.0500001, 0.3, 0.2] * 2 + [1.2])
        message = initiation_with_valid_mac1(server_public)
        source = choose.choice(sources)
        outputs = []
        for device in devices:
            device.receive_datagram(message, source, now)
            outputs.append((device.to_network[:], dict(device.drops)))
            device.to_network.clear()
        assert outputs[0] == outputs[1], (now, source)
        answered += bool(outputs[0][0])
    assert fast.drops[DropReason.RATE_LIMITED] > 3000  # the flood was refused ...
    assert fast._refused_until  # ... through the memo
    assert answered > 50  # and sources with tokens got cookie replies meanwhile
    assert fast.drops[DropReason.DECRYPT_HANDSHAKE] == reference.drops[
        DropReason.DECRYPT_HANDSHAKE]


def test_flood_fast_path_never_drops_transport_data() -> None:
    """An established peer that floods initiations from its own address (or whose address
    an attacker spoofs) is refused handshakes, but its transport data still arrives."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from pairlib import A_ENDPOINT, Pair

    pair = Pair(b_knows_a_endpoint=True)
    pair.a_sends(b"before")
    assert [p[20:] for p in pair.b.received] == [b"before"]
    pair.b.received.clear()
    device = pair.b.device
    start = pair.now
    for i in range(2000):  # the flood, 2000/s from the peer's endpoint
        device.receive_datagram(initiation_with_valid_mac1(pair.b.public_key), A_ENDPOINT,
                                start + i / 2000)
    pair.clock.now = start + 1.0
    rate_limited = device.drops[DropReason.RATE_LIMITED]
    device.receive_datagram(initiation_with_valid_mac1(pair.b.public_key), A_ENDPOINT,
                            pair.now)
    assert device.drops[DropReason.RATE_LIMITED] == rate_limited + 1  # refused, fast path
    assert device._refused_until.get(A_ENDPOINT[0], 0) > pair.now
    for n in range(5):
        pair.a_sends(b"during %d" % n)
    assert [p[20:] for p in pair.b.received] == [b"during %d" % n for n in range(5)]
