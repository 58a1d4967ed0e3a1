"""Per-source rate limit for handshake messages under load (kernel ratelimiter.c semantics).

Whitepaper 5.3: when under load, a handshake message is processed only if it carries a valid
mac2 (the sender proved it owns its source address) and, in addition, the kernel and
wireguard-go limit how often one source may make us do the expensive Curve25519 work.

A token bucket per source:
- 20 packets per second, burst 5; tokens are counted in nanoseconds, so that a packet costs
  1e9 / 20 = 50,000,000 and the bucket holds at most 5 packets' worth (TOKEN_MAX);
- a new source starts with TOKEN_MAX - PACKET_COST and is allowed (the kernel's choice);
- refill is elapsed time; a packet passes when tokens >= PACKET_COST (kernel: `>=`;
  wireguard-go writes `>`, which differs only at exact nanosecond ties);
- IPv4 sources are keyed by the full address (/32), IPv6 by the top 64 bits (/64), so one host
  cannot dodge the limit by hopping through its /64;
- entries idle for more than 1 s are dropped: the kernel does it from a work item every second,
  we do it amortized inside `allow` at most once per second of `now`;
- the table has a hard cap; when it is full, new sources are refused (kernel: err_oom path)
  until the next prune frees room. Known sources keep being served.

sans-IO: the caller passes `now` (seconds, monotonic).
"""

from __future__ import annotations

from ipaddress import IPv6Address, ip_address

PACKETS_PER_SECOND = 20
PACKETS_BURSTABLE = 5
_NSEC_PER_SEC = 1_000_000_000
PACKET_COST = _NSEC_PER_SEC // PACKETS_PER_SECOND
TOKEN_MAX = PACKET_COST * PACKETS_BURSTABLE
IDLE_PRUNE_AFTER_NS = _NSEC_PER_SEC  # kernel: now - last_time_ns > NSEC_PER_SEC
PRUNE_INTERVAL_NS = _NSEC_PER_SEC  # kernel: gc work queued every HZ
# Kernel: max_entries = table_size * 8 with table_size 8192 on machines with > 1 GiB of RAM.
DEFAULT_MAX_ENTRIES = 8192 * 8

_LAST_SEEN = 0
_TOKENS = 1


def source_key(ip: bytes | str) -> bytes:
    """The bucket key of a source address: 4 bytes for IPv4, the /64 (8 bytes) for IPv6.

    An IPv4-mapped IPv6 address (::ffff:a.b.c.d, from a dual-stack socket) counts as IPv4."""
    if isinstance(ip, str):
        if ":" not in ip:
            # dotted IPv4, the common case: ~4x cheaper than ipaddress (this runs per
            # handshake datagram under load, i.e. per datagram of a flood)
            parts = ip.split(".")
            if len(parts) == 4:
                try:
                    return bytes(map(int, parts))
                except ValueError:
                    pass  # let ip_address below give the proper error
        address = ip_address(ip.split("%", 1)[0])
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.packed
        ip = address.packed
    if len(ip) == 4:
        return bytes(ip)
    if len(ip) == 16:
        if ip[:12] == b"\x00" * 10 + b"\xff\xff":
            return bytes(ip[12:])
        return bytes(ip[:8])
    raise ValueError("a source address is 4 or 16 bytes")


class RateLimiter:
    """Token buckets keyed by source address (see the module docstring). The defaults are
    the kernel's handshake limit; the device also keeps one for cookie replies."""

    __slots__ = ("_entries", "_last_prune_ns", "max_entries", "packet_cost", "token_max")

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        packets_per_second: int = PACKETS_PER_SECOND,
        burst: int = PACKETS_BURSTABLE,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        if packets_per_second < 1 or burst < 1:
            raise ValueError("a rate limit allows at least one packet per second and burst")
        self.max_entries = max_entries
        self.packet_cost = _NSEC_PER_SEC // packets_per_second
        self.token_max = self.packet_cost * burst
        # key -> [last seen (ns), tokens (ns)]
        self._entries: dict[bytes, list[int]] = {}
        self._last_prune_ns: int | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def allow(self, ip: bytes | str, now: float) -> bool:
        """May this source have one more handshake processed at time `now`?"""
        return self.allow_or_wait(ip, now) == 0.0

    def allow_or_wait(self, ip: bytes | str, now: float) -> float:
        """`allow`, saying more on refusal: 0.0 when allowed (a token was taken), else the
        seconds until this source's bucket holds a token again if nothing else happens (> 0;
        a refusal because the table is full says 1 ns: nothing is known about later). Until
        then the source is refused whatever it sends, so a caller may refuse it without
        asking again (the bucket's state is the same whether or not it is asked)."""
        # Integer nanoseconds, rounded once, so that bucket arithmetic is exact (0.05 s is
        # exactly one packet's cost, not 49,999,999.99 ns of it).
        now_ns = round(now * _NSEC_PER_SEC)
        self._maybe_prune(now_ns)
        key = source_key(ip)
        entry = self._entries.get(key)
        cost = self.packet_cost
        if entry is not None:
            # "Quasi-inspired by nft_limit.c": the burst is part of the bucket's size.
            elapsed = max(0, now_ns - entry[_LAST_SEEN])
            tokens = min(self.token_max, entry[_TOKENS] + elapsed)
            entry[_LAST_SEEN] = now_ns
            if tokens >= cost:
                entry[_TOKENS] = tokens - cost
                return 0.0
            entry[_TOKENS] = tokens
            return (cost - tokens) / _NSEC_PER_SEC
        if len(self._entries) >= self.max_entries:
            return 1 / _NSEC_PER_SEC  # full: refuse new sources rather than grow without bound
        self._entries[key] = [now_ns, self.token_max - cost]
        return 0.0

    def _maybe_prune(self, now_ns: int) -> None:
        """Drop entries idle for more than a second; runs at most once per second of `now`,
        so its O(entries) cost is amortized over everything allowed in between."""
        if self._last_prune_ns is None:
            self._last_prune_ns = now_ns
            return
        if now_ns - self._last_prune_ns < PRUNE_INTERVAL_NS:
            return
        self._last_prune_ns = now_ns
        stale = [
            key
            for key, entry in self._entries.items()
            if now_ns - entry[_LAST_SEEN] > IDLE_PRUNE_AFTER_NS
        ]
        for key in stale:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
        self._last_prune_ns = None


class TokenBucket:
    """One bucket for everything: `packets_per_second`, up to `burst` at once (starts full).

    The device bounds its cookie replies with it, all sources together, on top of their
    per-source limit: a cookie reply costs an XChaCha20-Poly1305 seal, and many spoofed
    sources must not buy the whole single thread with replies. Integer nanoseconds as in
    RateLimiter, so the outcome does not depend on how often the bucket is looked at."""

    __slots__ = ("_last_ns", "_tokens", "packet_cost", "token_max")

    def __init__(self, packets_per_second: int, burst: int) -> None:
        if packets_per_second < 1 or burst < 1:
            raise ValueError("a token bucket allows at least one packet per second and burst")
        self.packet_cost = _NSEC_PER_SEC // packets_per_second
        self.token_max = self.packet_cost * burst
        self._tokens = self.token_max
        self._last_ns: int | None = None

    def _refill(self, now: float) -> int:
        now_ns = round(now * _NSEC_PER_SEC)
        last = self._last_ns
        if last is None or now_ns > last:
            if last is not None:
                self._tokens = min(self.token_max, self._tokens + now_ns - last)
            self._last_ns = now_ns
        return self._tokens

    def has_token(self, now: float) -> bool:
        """Would `take` succeed at `now`? (Takes nothing.)"""
        return self._refill(now) >= self.packet_cost

    def take(self, now: float) -> bool:
        """One packet's token at `now`, if there is one."""
        if self._refill(now) >= self.packet_cost:
            self._tokens -= self.packet_cost
            return True
        return False
