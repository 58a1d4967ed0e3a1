"""RateLimiter with a scripted clock: the kernel selftest's timing table, capacity, pruning."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from wgpy.core.ratelimiter import RateLimiter, TokenBucket, source_key

COST = 1 / 20  # seconds per packet at 20 packets/s

# drivers/net/wireguard/selftest/ratelimiter.c, expected_results: (seconds slept before, allowed)
KERNEL_TIMINGS = [
    *[(0.0, True)] * 5,  # the burst
    (0.0, False),
    (COST, True),
    (0.0, False),
    (COST * 2, True),
    (0.0, True),
    (0.0, False),
]


def v4(n: int) -> bytes:
    return IPv4Address(n).packed


def test_kernel_selftest_timings_v4_and_v6() -> None:
    """Same walk as the kernel's timings_test: one source follows the table; at every step a
    fresh source is always allowed; the IPv6 source varies its low 64 bits, which must not
    matter (/64 keying), while changing the top 32 bits makes a fresh source."""
    limiter = RateLimiter()
    now = 1000.0
    base4 = 8182
    base6 = (1212 << 96) | (289188 << 64)
    for i, (sleep, expected) in enumerate(KERNEL_TIMINGS):
        now += sleep
        assert limiter.allow(v4(base4), now) is expected, f"v4 step {i}"
        assert limiter.allow(v4(base4 + i + 1), now), f"v4 fresh source step {i}"
        same_64 = IPv6Address(base6 | (i << 32) | i).packed
        assert limiter.allow(same_64, now) is expected, f"v6 step {i}"
        other_64 = IPv6Address(base6 + ((i + 1) << 96)).packed
        assert limiter.allow(other_64, now), f"v6 fresh source step {i}"


def test_capacity_refuses_new_sources_but_serves_known_ones() -> None:
    """Kernel capacity_test: max_entries sources pass, the next new one is refused."""
    limiter = RateLimiter(max_entries=64)
    now = 5.0
    for i in range(64):
        assert limiter.allow(v4(i), now)
    assert not limiter.allow(v4(64), now)
    assert limiter.allow(v4(3), now)  # known source still has tokens
    assert len(limiter) == 64


def test_idle_entries_are_pruned_and_free_room() -> None:
    limiter = RateLimiter(max_entries=10)
    for i in range(10):
        assert limiter.allow(v4(i), 0.0)
    assert not limiter.allow(v4(100), 0.5)
    # one source stays active; the others go idle for more than a second
    assert limiter.allow(v4(0), 0.9)
    assert limiter.allow(v4(100), 1.2)  # prune ran: idle > 1 s dropped, room for a newcomer
    assert len(limiter) == 2  # v4(0), last seen at 0.9, survived; v4(100) was added


def test_no_unbounded_growth_under_a_spoofed_flood() -> None:
    limiter = RateLimiter(max_entries=1000)
    now = 0.0
    for i in range(50_000):
        now += 0.0001
        limiter.allow(v4(i), now)
        assert len(limiter) <= 1000


def test_sustained_rate_is_twenty_per_second_plus_the_burst() -> None:
    limiter = RateLimiter()
    allowed = sum(limiter.allow("192.0.2.1", step / 1000) for step in range(10_000))  # 10 s
    assert allowed == 5 + 20 * 10 - 1  # the last refill (at 10.0 s) is never reached


def test_a_long_idle_source_gets_a_full_burst_again() -> None:
    limiter = RateLimiter()
    assert all(limiter.allow("198.51.100.7", 0.0) for _ in range(5))
    assert not limiter.allow("198.51.100.7", 0.0)
    assert all(limiter.allow("198.51.100.7", 60.0) for _ in range(5))
    assert not limiter.allow("198.51.100.7", 60.0)


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    limiter = RateLimiter()
    for _ in range(5):
        assert limiter.allow("203.0.113.1", 10.0)
    assert not limiter.allow("203.0.113.1", 9.0)


def test_source_keys() -> None:
    assert source_key("192.0.2.1") == bytes([192, 0, 2, 1])
    assert source_key(bytes([192, 0, 2, 1])) == bytes([192, 0, 2, 1])
    assert source_key("::ffff:192.0.2.1") == bytes([192, 0, 2, 1])
    assert source_key(IPv6Address("::ffff:192.0.2.1").packed) == bytes([192, 0, 2, 1])
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::9")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")
    assert source_key("fe80::1%eth0") == source_key("fe80::2")
    with pytest.raises(ValueError):
        source_key(b"\x01\x02\x03")


def test_a_limiter_with_its_own_rate_and_burst() -> None:
    limiter = RateLimiter(packets_per_second=1000, burst=1000)
    allowed = sum(limiter.allow("192.0.2.1", 10.0) for _ in range(1500))
    assert allowed == 1000  # the burst (the first packet's token included)
    allowed = sum(limiter.allow("192.0.2.1", 10.0 + i / 10_000) for i in range(1, 10_001))
    assert 995 <= allowed <= 1001  # then 1000/s
    with pytest.raises(ValueError):
        RateLimiter(packets_per_second=0)


def test_token_bucket_all_sources_together() -> None:
    bucket = TokenBucket(packets_per_second=100, burst=10)
    assert sum(bucket.take(5.0) for _ in range(20)) == 10  # starts full
    assert not bucket.has_token(5.0)
    assert not bucket.take(5.0099)
    assert bucket.has_token(5.01) and bucket.take(5.01) and not bucket.take(5.01)
    # looking more often changes nothing: whole-nanosecond arithmetic
    looked, unlooked = TokenBucket(100, 10), TokenBucket(100, 10)
    for bucket in (looked, unlooked):
        while bucket.take(7.0):
            pass
    for i in range(1, 1000):
        looked.has_token(7.0 + i * 1e-5)
    assert [looked.take(7.01 + 0.005 * k) for k in range(40)] == [
        unlooked.take(7.01 + 0.005 * k) for k in range(40)]
    assert bucket.has_token(100.0)  # a long pause refills up to the burst
    assert sum(bucket.take(100.0) for _ in range(20)) == 10
