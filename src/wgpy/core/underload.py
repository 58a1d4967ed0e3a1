"""The under-load gate: when a handshake message may cost us Diffie-Hellman work (whitepaper 5.3).

Under load a handshake message is worked on only with a valid mac2 (its sender proved it
receives at its source address) and within its source's handshake rate limit; without one it
is answered with a cookie reply instead. This object holds what decides that, apart from the
MACs themselves (cookie.py's CookieChecker):

- the load: the kernel is under load from a backlog in its handshake queue (512 of 4096); a
  single-threaded core has no such queue of its own, so it takes two signs: the rate of
  handshake messages with a valid mac1 (`count`, 512/s), and a backlog -- `backlog` handshake
  messages in one receive batch, which only a queue building up in its socket brings, however
  slowly the core works them off (`note_backlog`) -- and stays under load for
  UNDER_LOAD_LINGER after the last sign (`active`);
- the handshake rate limiter (kernel semantics, ratelimiter.py), charged only by messages with
  a valid mac2, in the kernel's order, so a sender spoofing a peer's address never empties the
  peer's bucket;
- the cookie replies' own limits, per source and all sources together (`allows_cookie_reply`):
  each reply is an XChaCha20-Poly1305 seal (~45 us here), generous enough that a spoofer using
  a peer's address at hundreds per second does not use up that address's replies, and tight
  enough that many spoofed addresses cannot buy the single thread (~20 % of it at most, after
  a burst of up to 2,000 replies, ~90 ms); one source cannot use up the others' replies. The
  kernel bounds this work with its handshake queue; its per-source limiter is for handshakes
  only;
- a flood's fast path (`refuses_before_mac1`): a source over its cookie-reply limit is refused
  until its bucket holds a token again (the limiter said when), and every source while the
  replies of all are spent, for messages without a cookie (zero mac2) while under load: they
  could only be answered with a cookie reply, so they are dropped before mac1, ~5x cheaper.
"""

from __future__ import annotations

from wgpy.constants import UNDER_LOAD_LINGER
from wgpy.core.cookie import mac2_missing
from wgpy.core.ratelimiter import RateLimiter, TokenBucket

_INF = float("inf")
_REFUSED_SOURCES_MAX = 4096  # entries in refused_until before it is emptied


class UnderLoad:
    # Handshake messages per second above which the device counts as under load.
    rate = 512
    # Handshake messages in one receive batch (the loop reads at most 128 datagrams at once)
    # that mean a backlog: a quarter of a full read, as the kernel's 512 is an eighth of its
    # queue. A peer's own handshakes come one or two at a time.
    backlog = 32
    cookie_replies_per_source = 1000
    cookie_replies_per_second = 5000

    def __init__(self) -> None:
        self.handshake_limiter = RateLimiter()  # handshakes with a valid mac2, under load
        # a second's worth of burst: a spoofer sending in bursts must not empty the bucket
        # of the address it spoofs for long
        self.cookie_reply_limiter = RateLimiter(
            packets_per_second=self.cookie_replies_per_source,
            burst=self.cookie_replies_per_source,
        )
        # twice one source's burst: a source emptying its own bucket at one instant (as a
        # queue releases a flood) leaves half of this to the others
        self.cookie_replies_burst = min(self.cookie_replies_per_second,
                                        2 * self.cookie_replies_per_source)
        self.cookie_reply_budget = TokenBucket(self.cookie_replies_per_second,
                                               self.cookie_replies_burst)
        # source host -> until when the cookie-reply limiter refuses it
        self.refused_until: dict[str, float] = {}
        self._window_start = 0.0
        self._window_count = 0
        self._last_under_load = -_INF

    def count(self, now: float) -> bool:
        """Count one handshake message as load; is the device under load now?"""
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._window_count = 0
        self._window_count += 1
        if self._window_count >= self.rate:
            self._last_under_load = now
        return now - self._last_under_load < UNDER_LOAD_LINGER

    def note_backlog(self, now: float) -> None:
        """`backlog` handshake messages came in one receive batch: under load from now."""
        self._last_under_load = now

    def active(self, now: float) -> bool:
        """Under load, as the last counted message left it (counts nothing)."""
        return now - self._last_under_load < UNDER_LOAD_LINGER

    def refuses_before_mac1(self, message: bytes, host: str, now: float) -> bool:
        """The flood's fast path (module docstring). A message with any mac2 takes the full
        path and may be let through by a valid one: this never refuses a proven sender. A
        refused message with a bad mac1 counts as COOKIE_REPLY_LIMITED instead of BAD_MAC1 --
        dropped either way. A refused message still counts as load."""
        if now - self._last_under_load >= UNDER_LOAD_LINGER or not mac2_missing(message):
            return False
        refused_until = self.refused_until.get(host)
        if (
            refused_until is not None and now < refused_until
        ) or not self.cookie_reply_budget.has_token(now):
            self.count(now)
            return True
        return False

    def allows_cookie_reply(self, host: str, now: float) -> bool:
        """May `host` be sent a cookie reply now? Per source, then all sources together; a
        yes takes the tokens, a per-source no is remembered until that source's bucket holds
        a token again."""
        budget = self.cookie_reply_budget
        if not budget.has_token(now):
            return False
        wait = self.cookie_reply_limiter.allow_or_wait(host, now)
        if wait:
            refused = self.refused_until
            if len(refused) >= _REFUSED_SOURCES_MAX:
                refused.clear()  # many flooding addresses: the memo only saves time
            # a microsecond early rather than late: float rounding never refuses a token
            refused[host] = now + wait - 1e-6
            return False
        budget.take(now)
        return True
