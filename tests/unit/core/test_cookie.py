"""mac1/mac2 and cookie replies, generator -> checker -> generator, on a scripted clock."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest

from wgpy.constants import INITIATION_SIZE, RESPONSE_SIZE
from wgpy.core import crypto
from wgpy.core.cookie import CookieChecker, CookieGenerator, source_bytes

SRC = ("192.0.2.10", 51820)


def keypair(seed: int) -> tuple[bytes, bytes]:
    return crypto.generate_keypair(bytes([seed]) * 32)


class ScriptedRng:
    """Deterministic `rng(n)` that records what it handed out."""

    def __init__(self) -> None:
        self.counter = 0
        self.handed_out: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        self.counter += 1
        out = hashlib.blake2s(self.counter.to_bytes(8, "little")).digest() * 2
        self.handed_out.append(out[:n])
        return out[:n]


def handshake_message(size: int = INITIATION_SIZE) -> bytearray:
    """A packed handshake message with the MAC fields still zero, as messages.py produces."""
    body = bytearray(os.urandom(size - 32)) + bytearray(32)
    body[0:4] = (1 if size == INITIATION_SIZE else 2).to_bytes(4, "little")
    return body


def blake2s_mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


@pytest.fixture
def responder() -> tuple[bytes, CookieChecker]:
    _, public = keypair(1)
    checker = CookieChecker()
    checker.init(public)
    return public, checker


@pytest.mark.parametrize("size", [INITIATION_SIZE, RESPONSE_SIZE])
def test_mac1_good_and_bad(size: int, responder: tuple[bytes, CookieChecker]) -> None:
    public, checker = responder
    msg = handshake_message(size)
    CookieGenerator(public).add_macs(msg, now=0.0)
    # mac1 = MAC(HASH("mac1----" || Spub), msg[:-32]), spelled out with hashlib
    mac1_key = hashlib.blake2s(b"mac1----" + public).digest()
    assert bytes(msg[-32:-16]) == blake2s_mac(mac1_key, bytes(msg[:-32]))
    assert bytes(msg[-16:]) == bytes(16)  # no cookie yet: mac2 is zero
    assert checker.check_mac1(msg)
    assert checker.check_mac1(bytes(msg))

    for position in (5, size - 33, size - 32, size - 17):  # body, last body byte, mac1
        tampered = bytearray(msg)
        tampered[position] ^= 1
        assert not checker.check_mac1(tampered), position
    mac2_only = bytearray(msg)
    mac2_only[-1] ^= 1
    assert checker.check_mac1(mac2_only)  # mac2 is not covered by mac1

    _, other_public = keypair(2)
    addressed_elsewhere = handshake_message(size)
    CookieGenerator(other_public).add_macs(addressed_elsewhere, now=0.0)
    assert not checker.check_mac1(addressed_elsewhere)

    checker.init(None)
    assert not checker.check_mac1(msg)
    assert not checker.check_mac1(b"\x01" * 20)


def test_round_trip_under_load(responder: tuple[bytes, CookieChecker]) -> None:
    public, checker = responder
    rng = ScriptedRng()
    generator = CookieGenerator(public)
    now = 100.0

    first = handshake_message()
    generator.add_macs(first, now)
    assert checker.check_mac1(first)
    assert not checker.check_mac2(first, SRC, now, rng)  # no cookie: mac2 is zeros

    reply = checker.create_reply(first, 0x01020304, SRC, now, rng)
    assert len(reply) == 64
    assert reply[:4] == b"\x03\x00\x00\x00"
    assert reply[4:8] == (0x01020304).to_bytes(4, "little")
    nonce = reply[8:32]
    assert nonce == rng.handed_out[-1]  # the nonce comes from rng

    # the cookie inside is the kernel's MAC(Rm, ip || port big-endian)
    secret = rng.handed_out[0]
    cookie_key = hashlib.blake2s(b"cookie--" + public).digest()
    cookie = crypto.xaead_decrypt(cookie_key, nonce, reply[32:], bytes(first[-32:-16]))
    assert cookie == blake2s_mac(secret, bytes([192, 0, 2, 10]) + (51820).to_bytes(2, "big"))

    assert generator.consume_reply(reply, now + 0.1)
    second = handshake_message()
    generator.add_macs(second, now + 1)
    assert bytes(second[-16:]) == blake2s_mac(cookie, bytes(second[:-16]))
    assert checker.check_mac1(second)
    assert checker.check_mac2(second, SRC, now + 1, rng)
    # the cookie binds the source address and port
    assert not checker.check_mac2(second, ("192.0.2.10", 51821), now + 1, rng)
    assert not checker.check_mac2(second, ("192.0.2.11", 51820), now + 1, rng)
    # mac2 covers mac1 and the body
    tampered = bytearray(second)
    tampered[-20] ^= 1
    assert not checker.check_mac2(tampered, SRC, now + 1, rng)


def test_a_reply_is_taken_once(responder: tuple[bytes, CookieChecker]) -> None:
    public, checker = responder
    rng = ScriptedRng()
    generator = CookieGenerator(public)
    msg = handshake_message()
    generator.add_macs(msg, 0.0)
    reply = checker.create_reply(msg, 7, SRC, 0.0, rng)
    assert generator.consume_reply(reply, 0.0)
    assert not generator.consume_reply(reply, 0.0)  # kernel: have_sent_mac1 cleared


def test_unexpected_malformed_and_tampered_replies(responder: tuple[bytes, CookieChecker]) -> None:
    public, checker = responder
    rng = ScriptedRng()
    generator = CookieGenerator(public)
    msg = handshake_message()
    reply = checker.create_reply(msg, 7, SRC, 0.0, rng)
    assert not generator.consume_reply(reply, 0.0)  # we never sent anything

    generator.add_macs(msg, 0.0)
    reply = checker.create_reply(msg, 7, SRC, 0.0, rng)
    for position in (8, 31, 32, 63):  # nonce, ciphertext, tag
        tampered = bytearray(reply)
        tampered[position] ^= 1
        assert not generator.consume_reply(tampered, 0.0), position
    wrong_type = bytearray(reply)
    wrong_type[0] = 2
    assert not generator.consume_reply(wrong_type, 0.0)
    reserved_set = bytearray(reply)
    reserved_set[2] = 1
    assert not generator.consume_reply(reserved_set, 0.0)
    assert not generator.consume_reply(reply[:-1], 0.0)
    assert generator.consume_reply(reply, 0.0)  # the untouched one still works


def test_a_reply_with_the_wrong_ad_is_rejected(responder: tuple[bytes, CookieChecker]) -> None:
    """A reply to an older message (another mac1) does not decrypt: AD = our last mac1."""
    public, checker = responder
    rng = ScriptedRng()
    generator = CookieGenerator(public)
    older, newer = handshake_message(), handshake_message()
    generator.add_macs(older, 0.0)
    reply_to_older = checker.create_reply(older, 7, SRC, 0.0, rng)
    generator.add_macs(newer, 1.0)
    assert not generator.consume_reply(reply_to_older, 1.0)
    assert generator.consume_reply(checker.create_reply(newer, 7, SRC, 1.0, rng), 1.0)


def test_a_reply_made_for_another_peer_is_rejected(responder: tuple[bytes, CookieChecker]) -> None:
    _, checker = responder
    rng = ScriptedRng()
    _, other_public = keypair(3)
    generator = CookieGenerator(other_public)  # thinks it talks to someone else
    msg = handshake_message()
    generator.add_macs(msg, 0.0)
    assert not generator.consume_reply(checker.create_reply(msg, 7, SRC, 0.0, rng), 0.0)


def _cookie_holder(
    public: bytes, checker: CookieChecker, rng: Callable[[int], bytes], now: float
) -> CookieGenerator:
    generator = CookieGenerator(public)
    msg = handshake_message()
    generator.add_macs(msg, now)
    assert generator.consume_reply(checker.create_reply(msg, 7, SRC, now, rng), now)
    return generator


def test_the_sender_stops_using_a_cookie_after_115_s(
    responder: tuple[bytes, CookieChecker],
) -> None:
    """Kernel: a cookie is used for COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY (115 s);
    so it is certainly gone 120 s after it was received."""
    public, checker = responder
    generator = _cookie_holder(public, checker, ScriptedRng(), now=1000.0)
    for age, carries_mac2 in [(0.0, True), (114.9, True), (115.0, False), (120.0, False)]:
        msg = handshake_message()
        generator.add_macs(msg, 1000.0 + age)
        assert (bytes(msg[-16:]) != bytes(16)) is carries_mac2, age


def test_secret_rotation_invalidates_old_cookies_after_120_s(
    responder: tuple[bytes, CookieChecker],
) -> None:
    public, checker = responder
    rng = ScriptedRng()
    generator = _cookie_holder(public, checker, rng, now=0.0)  # Rm born at 0
    msg = handshake_message()
    generator.add_macs(msg, 110.0)  # cookie still fresh for the sender
    assert checker.check_mac2(msg, SRC, 110.0, rng)
    assert checker.check_mac2(msg, SRC, 119.9, rng)
    secrets_before = rng.counter
    assert not checker.check_mac2(msg, SRC, 120.0, rng)  # Rm renewed from rng
    assert rng.counter == secrets_before + 1
    # a fresh reply carries a cookie from the new secret, and that one works
    fresh = _cookie_holder(public, checker, rng, now=120.0)
    msg = handshake_message()
    fresh.add_macs(msg, 121.0)
    assert checker.check_mac2(msg, SRC, 121.0, rng)


def test_source_bytes_follow_the_kernel() -> None:
    assert source_bytes(("192.0.2.1", 0x1234)) == bytes([192, 0, 2, 1, 0x12, 0x34])
    assert source_bytes(("::ffff:192.0.2.1", 0x1234)) == bytes([192, 0, 2, 1, 0x12, 0x34])
    v6 = source_bytes(("2001:db8::1", 443))
    assert len(v6) == 18 and v6[-2:] == (443).to_bytes(2, "big")
    assert source_bytes(("fe80::1%eth0", 1)) == source_bytes(("fe80::1", 1))


def test_create_reply_without_a_key_is_an_error() -> None:
    checker = CookieChecker()
    with pytest.raises(ValueError):
        checker.create_reply(handshake_message(), 1, SRC, 0.0, ScriptedRng())


def test_validate_follows_the_kernel_order(responder: tuple[bytes, CookieChecker]) -> None:
    """wg_cookie_validate_packet: mac1, then (under load) mac2, and only for a valid mac2 the
    source's rate limit; the verdict is one of the kernel's four cookie_mac_states."""
    from wgpy.core.cookie import CookieMacState
    from wgpy.core.ratelimiter import RateLimiter

    public, checker = responder
    rng = ScriptedRng()
    generator = CookieGenerator(public)
    now = 100.0
    limiter = RateLimiter()
    asked: list[bool] = []

    def load(answer: bool) -> Callable[[], bool]:
        def under_load() -> bool:
            asked.append(answer)
            return answer
        return under_load

    no_cookie = handshake_message()
    generator.add_macs(no_cookie, now)
    bad_mac1 = bytearray(no_cookie)
    bad_mac1[-20] ^= 1
    assert checker.validate(bad_mac1, SRC, now, rng, load(True), limiter) is (
        CookieMacState.INVALID_MAC)
    assert asked == []  # a bad mac1 is no load
    assert checker.validate(no_cookie, SRC, now, rng, load(False), limiter) is (
        CookieMacState.VALID_MAC_BUT_NO_COOKIE)
    # under load: mac2 missing, or made with a cookie for another source (a spoofer's), is
    # no cookie -- and neither takes a token from the source's bucket
    spoofed = bytearray(no_cookie)
    spoofed[-16:] = blake2s_mac(b"k" * 16, bytes(spoofed[:-16]))
    for message in [no_cookie] * 10 + [spoofed] * 10:
        assert checker.validate(message, SRC, now, rng, load(True), limiter) is (
            CookieMacState.VALID_MAC_BUT_NO_COOKIE)
    assert len(limiter) == 0
    # a valid mac2: the bucket pays (burst 5 plus the first packet's), then refuses
    generator.consume_reply(checker.create_reply(no_cookie, 1, SRC, now, rng), now)
    verdicts = []
    for _ in range(7):
        with_cookie = handshake_message()
        generator.add_macs(with_cookie, now)
        verdicts.append(checker.validate(with_cookie, SRC, now, rng, load(True), limiter))
    assert verdicts == [CookieMacState.VALID_MAC_WITH_COOKIE] * 5 + [
        CookieMacState.VALID_MAC_WITH_COOKIE_BUT_RATELIMITED] * 2
