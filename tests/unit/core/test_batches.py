"""The batch entry points are the single ones applied in order.

`Device.send_packets` / `receive_datagrams` (what the daemon calls) work on runs of packets:
timers, byte counters and the keep-key-fresh rule are applied once per run. Their contract is
that this changes nothing observable: two identical pairs driven through the same story, one
fed whole batches and the other one packet at a time, must end in the same state and have put
the same bytes on the wire and into the TUN.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pairlib import A_ENDPOINT, B_ENDPOINT, Pair, ipv4_packet, ipv6_packet

from wgpy.core.device import Device
from wgpy.core.events import EventKind

ROAMED = ("198.51.100.7", 40000)

# what A's TUN may hand over: to B (v4/v6, empty and padded sizes), unrouted, malformed
OUTGOING = {
    "v4": ipv4_packet("10.9.0.1", "10.9.0.2", b"x" * 33),
    "v4-big": ipv4_packet("10.9.0.1", "10.9.0.2", b"y" * 1380),
    "v6": ipv6_packet("fd00:9::1", "fd00:9::2", b"z" * 7),
    "unrouted": ipv4_packet("10.9.0.1", "10.77.0.1"),
    "garbage": b"\x99" * 30,
    "empty": b"",
}
# what B may send back: data from its own address, and a spoofed inner source
RETURNING = {
    "v4": ipv4_packet("10.9.0.2", "10.9.0.1", b"back"),
    "spoofed": ipv4_packet("10.9.0.66", "10.9.0.1", b"spoof"),
}

steps = st.lists(
    st.one_of(
        st.tuples(st.just("a_sends"), st.lists(st.sampled_from(sorted(OUTGOING)), max_size=12)),
        st.tuples(st.just("b_sends"), st.lists(st.sampled_from(sorted(RETURNING)), max_size=6)),
        # deliver what is in flight; mangle: duplicate, corrupt one, reorder, come from elsewhere
        st.tuples(st.just("deliver"), st.sampled_from(["plain", "dup", "corrupt", "reverse",
                                                       "roam"])),
        st.tuples(st.just("tick"), st.sampled_from([0.01, 1.0, 9.0, 11.0, 26.0, 121.0])),
    ),
    max_size=25,
)


class Story:
    def __init__(self, batched: bool) -> None:
        self.batched = batched
        self.pair = Pair(seed=7)
        self.wire: list[bytes] = []
        self.tun: dict[str, list[bytes]] = {"a": [], "b": []}
        self.b_source = A_ENDPOINT

    def feed_packets(self, device: Device, packets: list[bytes]) -> None:
        if self.batched:
            device.send_packets(packets, self.pair.now)
        else:
            for packet in packets:
                device.send_packet(packet, self.pair.now)

    def feed_datagrams(self, device: Device, datagrams: list[tuple[bytes, tuple[str, int]]]
                       ) -> None:
        if self.batched:
            device.receive_datagrams(datagrams, self.pair.now)
        else:
            for data, src in datagrams:
                device.receive_datagram(data, src, self.pair.now)

    def deliver(self, how: str) -> None:
        pair = self.pair
        for _ in range(6):  # answers to answers (handshake, confirmation) until quiet
            moved = False
            for node in (pair.a, pair.b):  # what is due goes first, as in DeviceLoop.run_once
                node.device.on_timer(pair.now)
            for node, other in ((pair.a, pair.b), (pair.b, pair.a)):
                out = node.device.take_datagrams()
                datagrams = [data for data, _ in out]
                self.wire.extend(datagrams)
                if not datagrams:
                    continue
                moved = True
                if how == "dup":
                    datagrams = datagrams + datagrams[:2]
                elif how == "corrupt":
                    datagrams[0] = datagrams[0][:-1] + bytes([datagrams[0][-1] ^ 1])
                elif how == "reverse":
                    datagrams.reverse()
                source = node.endpoint
                if node is pair.a and how == "roam":
                    source = ROAMED
                self.feed_datagrams(other.device, [(d, source) for d in datagrams])
            for name, node in (("a", pair.a), ("b", pair.b)):
                self.tun[name].extend(node.device.take_packets())
            if not moved:
                return

    def run(self, story: list[tuple[str, object]]) -> None:
        pair = self.pair
        for kind, arg in story:
            if kind == "a_sends":
                self.feed_packets(pair.a.device, [OUTGOING[k] for k in arg])  # type: ignore[attr-defined]
            elif kind == "b_sends":
                self.feed_packets(pair.b.device, [RETURNING[k] for k in arg])  # type: ignore[attr-defined]
            elif kind == "deliver":
                self.deliver(arg)  # type: ignore[arg-type]
            else:
                pair.clock.advance(arg)  # type: ignore[arg-type]
                pair.a.device.on_timer(pair.now)
                pair.b.device.on_timer(pair.now)
        self.deliver("plain")

    def state(self) -> dict[str, object]:
        pair = self.pair
        result: dict[str, object] = {"wire": self.wire, "tun": self.tun}
        for name, node, peer in (("a", pair.a, pair.peer_b), ("b", pair.b, pair.peer_a)):
            device = node.device
            timers = peer.timers
            keypairs = [getattr(peer.keypairs, slot) for slot in ("previous", "current", "next")]
            result[name] = {
                "drops": dict(device.drops),
                "events": [(e.kind, e.now) for e in device.take_events()],
                "deadline": device.next_deadline(),
                "deadlines": list(timers.deadlines),
                "need_another_keepalive": timers.need_another_keepalive,
                "attempts": timers.handshake_attempts,
                "tx": peer.tx_bytes,
                "rx": peer.rx_bytes,
                "endpoint": peer.endpoint,
                "last_handshake": peer.last_handshake,
                "staged": list(peer.staged),
                "counters": [None if k is None else k.sending_counter for k in keypairs],
            }
        return result


@settings(max_examples=150, deadline=None)
@given(steps)
# issue 18: past REKEY_AFTER_TIME two single calls put data, initiation, data on the wire and
# one batch data, data, initiation; keep-key-fresh now queues the initiation on both paths
@example([("a_sends", ["v4"]), ("deliver", "plain"), ("tick", 11.0), ("deliver", "plain"),
          ("tick", 121.0), ("a_sends", ["v4", "v4"])])
def test_batches_equal_single_calls(story: list[tuple[str, object]]) -> None:
    batched, single = Story(batched=True), Story(batched=False)
    batched.run(story)
    single.run(story)
    assert batched.state() == single.state()


def test_a_batch_crosses_peers_sessions_and_garbage_in_order() -> None:
    """One hand-made story with everything in one batch: the same as single calls, and the
    data actually arrives (so the property above is not comparing two empty pipes)."""
    story: list[tuple[str, object]] = [
        ("a_sends", ["v4"]), ("deliver", "plain"),
        ("a_sends", ["v4", "v6", "garbage", "v4-big", "unrouted", "empty", "v4"]),
        ("deliver", "dup"), ("a_sends", ["v4"]), ("deliver", "roam"),
        ("b_sends", ["v4", "spoofed", "v4"]), ("deliver", "plain"),
        ("tick", 11.0), ("a_sends", ["v4"] * 5), ("deliver", "reverse"),
    ]
    batched, single = Story(batched=True), Story(batched=False)
    batched.run(story)
    single.run(story)
    state = batched.state()
    assert state == single.state()
    assert len(state["tun"]["b"]) == 11  # type: ignore[index]
    assert state["tun"]["a"] == [RETURNING["v4"]] * 2  # type: ignore[index]
    roams = [kind for kind, _ in state["b"]["events"] if kind is EventKind.ENDPOINT_CHANGED]  # type: ignore[index]
    assert len(roams) == 2  # to ROAMED and back
    assert state["a"]["drops"]  # type: ignore[index]
    assert B_ENDPOINT == state["a"]["endpoint"]  # type: ignore[index]


def test_a_batch_stops_at_the_last_counter_and_waits_for_a_new_session() -> None:
    """The kernel checks the message limit per packet (send.c: out_invalid): packets past it
    are kept for the next session, which a handshake is started for; none goes out with a
    counter at or over REJECT_AFTER_MESSAGES."""
    from wgpy.constants import REJECT_AFTER_MESSAGES

    pair = Pair(seed=3)
    pair.a_sends()  # session up
    keypair = pair.peer_b.keypairs.current
    assert keypair is not None
    keypair.sending_counter = REJECT_AFTER_MESSAGES - 2
    pair.clock.advance(6.0)  # past REKEY_TIMEOUT: a new initiation may go out
    packets = [ipv4_packet("10.9.0.1", "10.9.0.2", bytes([i]) * 20) for i in range(5)]
    pair.a.device.send_packets(packets, pair.now)
    out = pair.a.device.take_datagrams()
    data = [d for d, _ in out if d[0] == 4]
    counters = [int.from_bytes(d[8:16], "little") for d in data]
    assert counters == [REJECT_AFTER_MESSAGES - 2, REJECT_AFTER_MESSAGES - 1]
    assert list(pair.peer_b.staged) == packets[2:]
    assert [d[0] for d, _ in out].count(1) == 1  # one handshake initiation
    pair.b.device.receive_datagrams([(d, pair.a.endpoint) for d, _ in out], pair.now)
    pair.deliver()  # the new session carries the rest
    assert pair.b.received[-3:] == packets[2:]
