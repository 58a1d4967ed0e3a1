"""The core's cost under a handshake flood from one address (the e2e version is
tests/e2e/test_hostile_flood.py).

A cookie reply costs an XChaCha20-Poly1305 seal (tens of microseconds here, against ~3 us for
the mac1 check). If every initiation with a valid mac1 from an unproven source is answered,
one sender keeps the daemon's single thread busy and the kernel's socket queue then drops the
legitimate peers' packets with the flood's. So under load cookie replies have limits of their
own, per source address and all sources together. They are not the handshake rate limiter
(kernel semantics, 20/s burst 5): that one is only charged by messages with a valid mac2, in
the kernel's order, so a sender spoofing a peer's address cannot lock the peer out (issue 13)."""

from __future__ import annotations

import hashlib
import os
import secrets

import pytest

from wgpy.core.cookie import mac1_key
from wgpy.core.device import Device
from wgpy.core.underload import UnderLoad
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
    device.set_private_key(private)
    return device, public_key(private)


def test_cookie_replies_to_one_source_are_limited_under_load() -> None:
    device, server_public = flooded_device()
    attacker = ("192.0.2.66", 40000)
    sent = 4000
    for i in range(sent):  # 4000 in one second: 8x the under-load threshold
        device.receive_datagram(initiation_with_valid_mac1(server_public), attacker,
                                NOW + i / sent)
    cookie_replies = [d for d, dst in device.take_datagrams() if d[0] == 3 and dst == attacker]
    handshake_work = device.drops[DropReason.DECRYPT_HANDSHAKE]
    assert handshake_work < device.under_load.rate  # no DH work once under load
    # at most the source's cookie-reply budget: a second's worth plus the burst (another
    # second's worth; what came before the load detector tripped got DH work instead)
    per_source = device.under_load.cookie_replies_per_source
    assert len(cookie_replies) <= 2 * per_source, (
        f"{len(cookie_replies)} cookie replies to one source in one second")
    assert len(cookie_replies) >= per_source // 2  # and they were answered meanwhile
    assert device.drops[DropReason.COOKIE_REPLY_LIMITED] > 0
    assert device.drops[DropReason.RATE_LIMITED] == 0  # no mac2: the handshake bucket is untouched
    # another source is not starved by the first one's flood
    device.receive_datagram(initiation_with_valid_mac1(server_public), ("198.51.100.7", 5),
                            NOW + 1.0)
    assert [d[0] for d, _ in device.take_datagrams()] == [3]


def test_one_source_at_its_burst_leaves_cookie_replies_for_others() -> None:
    """A flood from one address, all of it at one instant (as a queue releases it), takes at
    most that source's burst of cookie replies; the budget of all sources together must
    still hold replies for the others at that instant. Before, that budget's burst (500) was
    half the per-source one (1,000): one source emptied it, and another's message in the same
    burst got no cookie reply (it would have been answered at its next retry, 5 s later)."""
    device, server_public = flooded_device()
    gate = device.under_load
    attacker = ("192.0.2.66", 40000)
    for _ in range(gate.rate + gate.cookie_replies_per_source + 100):
        device.receive_datagram(initiation_with_valid_mac1(server_public), attacker, NOW)
    to_attacker = [d for d, dst in device.take_datagrams() if d[0] == 3 and dst == attacker]
    assert len(to_attacker) == gate.cookie_replies_per_source  # its whole burst, no more
    device.receive_datagram(initiation_with_valid_mac1(server_public), ("198.51.100.7", 5),
                            NOW)
    assert [d[0] for d, _ in device.take_datagrams()] == [3]


def test_cookie_replies_from_many_sources_are_bounded_together() -> None:
    device, server_public = flooded_device()
    sent = 20_000
    for i in range(sent):  # 20,000 in one second, each from its own address
        source = (f"10.{(i >> 8) & 255}.{i & 255}.2", 1024 + (i & 4095))
        device.receive_datagram(initiation_with_valid_mac1(server_public), source,
                                NOW + i / sent)
    replies = sum(1 for d, _ in device.take_datagrams() if d[0] == 3)
    per_second = device.under_load.cookie_replies_per_second
    assert per_second // 2 <= replies <= per_second + device.under_load.cookie_replies_burst, (
        replies)
    assert device.drops[DropReason.COOKIE_SENT] == replies


def test_under_load_flood_state_is_bounded() -> None:
    device, server_public = flooded_device()
    for i in range(3000):  # many sources, many ports
        source = (f"10.{(i >> 8) & 255}.{i & 255}.1", 1024 + i)
        device.receive_datagram(initiation_with_valid_mac1(server_public), source,
                                NOW + i / 3000)
    assert len(device.indices) == 0  # nothing of the flood holds an index
    limiter = device.under_load.cookie_reply_limiter  # what the flood (no cookies) charges
    assert 0 < len(limiter) <= 3000
    assert len(limiter) <= limiter.max_entries
    # the next episode of load prunes the sources idle for more than a second
    for i in range(device.under_load.rate + 10):
        device.receive_datagram(initiation_with_valid_mac1(server_public), ("10.0.0.1", 1),
                                NOW + 10 + i / 10000)
    assert len(limiter) <= 1
    assert len(device.under_load.handshake_limiter) == 0  # no message had a valid mac2


def test_private_key_change_lets_the_next_handshake_go_at_once() -> None:
    """Kernel (wg_noise_expire_current_peer_keypairs resets last_sent_handshake) and
    wireguard-go (ExpireCurrentKeypairs) both allow a new initiation right after the private
    key changed; otherwise traffic waits up to REKEY_TIMEOUT for the first one."""
    from pairlib import Pair

    pair = Pair(b_knows_a_endpoint=True)
    pair.a_sends(b"first")
    assert pair.b.received
    pair.clock.advance(1.0)
    private = pair.a.private_key
    pair.a.device.set_private_key(generate_private_key())
    pair.a.device.set_private_key(private)
    pair.clock.advance(0.1)
    pair.b.received.clear()
    pair.a_sends(b"after the key change")
    assert [p[20:] for p in pair.b.received] == [b"after the key change"]


class _NoFastPath(UnderLoad):
    """The gate with neither of the fast paths (no memo, no early look at the budget)."""

    def refuses_before_mac1(self, message: bytes, host: str, now: float) -> bool:
        return False


class _SmallLimits(UnderLoad):
    cookie_replies_per_source = 50
    cookie_replies_per_second = 1000


class _SmallLimitsNoFastPath(_SmallLimits, _NoFastPath):
    pass


def _device_with(gate: UnderLoad, rng) -> Device:
    device = Device(rng=rng)
    device.under_load = gate
    return device


@pytest.mark.parametrize("many_sources", [False, True], ids=["per-source", "all-sources"])
def test_flood_fast_path_refuses_exactly_what_the_cookie_reply_limits_refuse(
    many_sources: bool,
) -> None:
    """Sources over their cookie-reply limit are remembered until their bucket refills
    (UnderLoad.refused_until), and while the replies of all sources are spent every
    source is refused; their cookie-less messages are then dropped before mac1. A device
    without that fast path must answer every message of the same flood the same way: a
    source with a token is never refused by it. Small limits, so that both bind."""
    import random

    private = generate_private_key()
    server_public = public_key(private)
    fast, reference = (_device_with(cls(), random.Random(7).randbytes)
                       for cls in (_SmallLimits, _SmallLimitsNoFastPath))
    for device in (fast, reference):
        device.set_private_key(private)
    token = 1 / fast.under_load.cookie_replies_per_source
    if many_sources:  # 400 addresses: together over the all-sources budget
        sources = [(f"10.1.{i >> 8}.{i & 255}", 1000 + i) for i in range(400)]
    else:  # three bucket keys (an IPv6 /64 is one), each over its own limit
        sources = [("192.0.2.66", 40000), ("192.0.2.66", 40001), ("2001:db8::1", 5),
                   ("2001:db8::2", 6), ("198.51.100.9", 7)]
    choose = random.Random(3)
    now = NOW
    answered = 0
    pauses = [0.0001] * 1500 + [token, token - 1e-7, token + 1e-7, 0.3, 0.2] * 2 + [1.2]
    for _ in range(6000):
        # mostly a flood (10,000/s, past the under-load threshold and the limits), sometimes
        # a pause of exactly a token's worth or more, so that buckets refill at and around
        # the memo's deadline, and now and then one long enough for the load to end
        now += choose.choice(pauses)
        message = initiation_with_valid_mac1(server_public)
        source = choose.choice(sources)
        outputs = []
        for device in (fast, reference):
            device.receive_datagram(message, source, now)
            outputs.append((device.take_datagrams(), dict(device.drops)))
        assert outputs[0] == outputs[1], (now, source)
        answered += bool(outputs[0][0])
    assert fast.drops[DropReason.COOKIE_REPLY_LIMITED] > 2000  # the flood was refused ...
    if not many_sources:
        assert fast.under_load.refused_until  # ... through the memo
    assert answered > 100  # and sources with tokens got cookie replies meanwhile
    assert fast.drops[DropReason.DECRYPT_HANDSHAKE] == reference.drops[
        DropReason.DECRYPT_HANDSHAKE]


def test_flood_fast_path_never_drops_transport_data() -> None:
    """An established peer that floods initiations from its own address (or whose address
    an attacker spoofs) is refused cookie replies, but its transport data still arrives."""
    from pairlib import A_ENDPOINT, Pair

    pair = Pair(b_knows_a_endpoint=True)
    pair.a_sends(b"before")
    assert [p[20:] for p in pair.b.received] == [b"before"]
    pair.b.received.clear()
    device = pair.b.device
    start = pair.now
    for i in range(10_000):  # the flood, 10,000/s from the peer's endpoint
        device.receive_datagram(initiation_with_valid_mac1(pair.b.public_key), A_ENDPOINT,
                                start + i / 10_000)
    pair.clock.now = start + 9_999 / 10_000
    for _ in range(2):  # the bucket is empty: the second is refused by the memo at least
        device.receive_datagram(initiation_with_valid_mac1(pair.b.public_key), A_ENDPOINT,
                                pair.now)
    assert device.under_load.refused_until.get(A_ENDPOINT[0], 0) > pair.now
    limited = device.drops[DropReason.COOKIE_REPLY_LIMITED]
    device.receive_datagram(initiation_with_valid_mac1(pair.b.public_key), A_ENDPOINT,
                            pair.now)
    assert device.drops[DropReason.COOKIE_REPLY_LIMITED] == limited + 1  # fast path
    for n in range(5):
        pair.a_sends(b"during %d" % n)
    assert [p[20:] for p in pair.b.received] == [b"during %d" % n for n in range(5)]


def test_spoofed_initiations_from_a_peers_address_do_not_lock_it_out() -> None:
    """Issue 13: under load, initiations with a valid mac1 and the real peer's source address
    (an off-path attacker needs only the server's public key) must not keep the peer from
    completing a handshake. They carry no valid mac2, so they get cookie replies and never
    take the peer's handshake tokens; the peer's own initiation gets a cookie reply too, and
    its retransmission with mac2 goes through -- within two retransmits."""
    from pairlib import A_ENDPOINT, Pair, ipv4_packet

    from wgpy.constants import REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX

    pair = Pair()
    server = pair.b.device
    attacker = ("203.0.113.66", 40000)
    flood_rate, spoof_rate = 600, 300  # the flood keeps B under load (over 512/s)
    step = 1 / (flood_rate + spoof_rate)
    spoof_every = (flood_rate + spoof_rate) // spoof_rate

    def flood_for(seconds: float) -> None:
        end = pair.now + seconds
        i = 0
        while pair.now < end:
            source = A_ENDPOINT if i % spoof_every == 0 else attacker
            server.receive_datagram(initiation_with_valid_mac1(pair.b.public_key), source,
                                    pair.now)
            pair.deliver()  # cookie replies to the spoofed ones reach A, which drops them
            pair.clock.advance(step)
            i += 1

    flood_for(1.0)
    assert server.under_load.active(pair.now)
    started = pair.now
    pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2", b"through"), pair.now)
    deadline = started + 2 * (REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX) + 0.5
    while not pair.b.received and pair.now < deadline:
        flood_for(0.1)
    assert [p[20:] for p in pair.b.received] == [b"through"], (
        dict(server.drops), pair.now - started)
    assert server.drops[DropReason.COOKIE_SENT] > spoof_rate  # the spoofed ones were answered
    assert server.drops[DropReason.RATE_LIMITED] == 0  # and took no handshake token


def test_an_invalid_mac2_under_load_is_answered_and_counted_as_bad_mac2() -> None:
    device, server_public = flooded_device()
    device.under_load.rate = 1
    message = bytearray(initiation_with_valid_mac1(server_public))
    message[-16:] = os.urandom(16)  # a cookie that is not ours for this source
    source = ("192.0.2.70", 7)
    device.receive_datagram(bytes(message), source, NOW)
    assert [(d[0], dst) for d, dst in device.take_datagrams()] == [(3, source)]
    assert device.drops == {DropReason.BAD_MAC2: 1}
    device.receive_datagram(initiation_with_valid_mac1(server_public), source, NOW)
    assert [(d[0], dst) for d, dst in device.take_datagrams()] == [(3, source)]
    assert device.drops == {DropReason.BAD_MAC2: 1, DropReason.COOKIE_SENT: 1}


def test_a_backlog_of_handshake_messages_in_one_receive_batch_is_load() -> None:
    """The kernel is under load from a backlog (512 of its 4096 queued handshakes), not only
    from a rate: a daemon too slow to process 512 handshake messages a second (an emulated CPU,
    a starved one) still sees its socket's queue in how many handshake messages one read
    brings. Such a batch puts the device under load at once; a batch one message short of the
    backlog does not, and neither do data packets."""
    backlog = UnderLoad.backlog
    assert backlog < 128  # fits one of the loop's reads (io/loop.py BATCH)
    for count, under_load in ((backlog - 1, False), (backlog + 8, True)):
        device, server_public = flooded_device()
        batch = [(initiation_with_valid_mac1(server_public), ("192.0.2.66", 40000 + i))
                 for i in range(count)]
        device.receive_datagrams(batch, NOW)  # one read, far below 512 messages/s
        kinds = [d[0] for d, _ in device.take_datagrams()]
        assert device.under_load.active(NOW) is under_load
        if under_load:
            # the messages after the backlog was seen cost no DH: answered with cookies
            assert kinds.count(3) == count - (backlog - 1)
            assert device.drops[DropReason.COOKIE_SENT] == count - (backlog - 1)
        else:
            assert 3 not in kinds
        assert device.under_load.active(NOW + 0.9) is under_load  # it lingers like the rate's
        assert not device.under_load.active(NOW + 1.0)
    # transport data in a batch, however many, is no handshake backlog
    device, _ = flooded_device()
    junk = [(b"\x04\x00\x00\x00" + bytes(60), ("192.0.2.66", 40000))] * 128
    device.receive_datagrams(junk, NOW)
    assert not device.under_load.active(NOW)
