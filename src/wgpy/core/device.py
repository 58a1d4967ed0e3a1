"""The sans-IO WireGuard device: datagrams, IP packets and `now` in; datagrams and packets out.

Inputs: `receive_datagrams(batch, now)` (from UDP), `send_packets(batch, now)` (from the TUN;
`receive_datagram`/`send_packet` for one), `on_timer(now)`; configuration methods. Outputs are
pulled, as from aioquic's connection: `take_datagrams()` (datagram, endpoint) to send,
`take_packets()` (IP packets) for the TUN and `take_events()` (what happened to peers, for
logs) each hand over what accumulated since the last call; the IO layer takes them after each
batch and asks `next_deadline()` when to call `on_timer`. Refused input is counted in `drops`
by reason and never raises. The core owns no clock and no randomness: `now` is a monotonic time in seconds and
`rng(n)` returns n random bytes; `wall_offset` (wall clock minus `now`) is kept up to date by the
IO layer for TAI64N timestamps.

The device is the branch table between the protocol's parts, as the kernel's receive.c and
send.c are: what it owns apart from that lives in objects of its own -- the receiver indexes
(index_table.py), the timer heap and the eight timer hooks (timers.py), the under-load gate
(underload.py), the MACs (cookie.py), the handshake (noise.py), the keypairs (keypair.py) and
cryptokey routing (allowedips.py).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from itertools import repeat

from wgpy import fastpath
from wgpy.constants import (
    DEFAULT_MTU,
    HANDSHAKE_INITIATION_RATE,
    KEEPALIVE_TIMEOUT,
    MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
    TRANSPORT_MIN_SIZE,
    ZERO_KEYS_AFTER,
)
from wgpy.core import crypto, noise
from wgpy.core.allowedips import AllowedIPs
from wgpy.core.cookie import CookieChecker, CookieMacState, mac2_missing
from wgpy.core.events import MAX_EVENTS, Event, EventKind
from wgpy.core.index_table import IndexTable
from wgpy.core.keypair import Keypair
from wgpy.core.messages import (
    TRANSPORT_HEADER,
    message_type,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
)
from wgpy.core.peer import Peer
from wgpy.core.tai64n import tai64n
from wgpy.core.timers import Timer, Timers
from wgpy.core.underload import UnderLoad
from wgpy.errors import DropReason, WgError
from wgpy.model import Endpoint

_QUEUED_INITIATION = int(Timer.QUEUED_INITIATION)
_unpack_header = TRANSPORT_HEADER.unpack_from

Rng = Callable[[int], bytes]


def _no_run(counter: int) -> bool:
    raise AssertionError("no run is open")  # (the replay check before the first run opens)


class Device:
    def __init__(self, rng: Rng, mtu: int = DEFAULT_MTU) -> None:
        self.rng = rng
        self.mtu = mtu
        self.identity: noise.StaticIdentity | None = None
        self.listen_port = 0
        self.fwmark = 0
        self.wall_offset = 0.0
        self.peers: dict[bytes, Peer] = {}
        self.allowed_ips: AllowedIPs[Peer] = AllowedIPs()
        self.cookie_checker = CookieChecker()
        self.under_load = UnderLoad()
        # our receiver indexes: a Keypair (transport) or a Peer (pending handshake)
        self.indices = IndexTable(rng)
        self.timers = Timers(self.peers, rng)
        self.drops: Counter[DropReason] = Counter()
        self._datagrams: list[tuple[bytes, Endpoint]] = []
        self._packets: list[bytes] = []
        # bounded: the oldest fall off if nobody takes them (the network cannot grow it)
        self._events: deque[Event] = deque(maxlen=MAX_EVENTS)

    # ------------------------------------------------------------------ outputs

    def take_datagrams(self) -> list[tuple[bytes, Endpoint]]:
        """The datagrams to send, (datagram, endpoint), in order, since the last call."""
        datagrams, self._datagrams = self._datagrams, []
        return datagrams

    def take_packets(self) -> list[bytes]:
        """The IP packets for the TUN, in order, since the last call."""
        packets, self._packets = self._packets, []
        return packets

    def take_events(self) -> list[Event]:
        """What happened to peers since the last call (the newest MAX_EVENTS at most)."""
        events = list(self._events)
        self._events.clear()
        return events

    # ------------------------------------------------------------------ configuration

    @property
    def private_key(self) -> bytes | None:
        return self.identity.private_key if self.identity else None

    @property
    def public_key(self) -> bytes | None:
        return self.identity.public_key if self.identity else None

    def set_private_key(self, key: bytes | None) -> None:
        if key is not None and len(key) != 32:
            raise WgError("a private key is 32 bytes")
        if key is not None:
            # stored clamped, as the kernel and wireguard-go: `wg show` prints it clamped
            key = crypto.clamp(key) if any(key) else None
        current = self.private_key
        if key == current:
            return  # wireguard-go: setting the same key changes nothing (syncconf relies on it)
        if key is None:
            self.identity = None
        else:
            self.identity = noise.StaticIdentity(key, crypto.public_key(key))
        self.cookie_checker.init(self.public_key)
        for peer in list(self.peers.values()):
            if self.identity is not None and peer.public_key == self.identity.public_key:
                self.remove_peer(peer)  # a peer with our own key is removed (wireguard-go)
                continue
            peer.handshake.precompute(self.identity)
            self._clear_sessions(peer)
            peer.last_sent_handshake = None  # the next handshake may go at once (kernel, wg-go)

    def add_peer(self, public_key: bytes) -> Peer:
        if len(public_key) != 32:
            raise WgError("a public key is 32 bytes")
        peer = self.peers.get(public_key)
        if peer is not None:
            return peer
        peer = Peer(public_key)
        peer.handshake.precompute(self.identity)
        self.peers[public_key] = peer
        return peer

    def get_peer(self, public_key: bytes) -> Peer | None:
        return self.peers.get(public_key)

    def remove_peer(self, peer: Peer) -> None:
        if self.peers.get(peer.public_key) is not peer:
            return
        del self.peers[peer.public_key]
        self.allowed_ips.remove_by_value(peer)
        self._clear_sessions(peer)
        peer.timers.cancel_all()
        peer.staged.clear()

    def remove_all_peers(self) -> None:
        for peer in list(self.peers.values()):
            self.remove_peer(peer)

    def set_endpoint(self, peer: Peer, endpoint: Endpoint) -> None:
        peer.endpoint = endpoint

    def set_persistent_keepalive(self, peer: Peer, seconds: int, now: float) -> None:
        if not 0 <= seconds <= 65535:
            raise WgError("persistent keepalive is 0..65535 seconds")
        old = peer.timers.persistent_keepalive
        peer.timers.persistent_keepalive = seconds
        if seconds == 0:
            peer.timers.deadlines[Timer.PERSISTENT_KEEPALIVE] = None
        elif old == 0 and self.identity is not None:
            # kernel and wireguard-go: turning it on sends a keepalive at once
            self._send_keepalive(peer, now)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def on_timer(self, now: float) -> None:
        for peer, timer in self.timers.expired(now):
            self._fire(peer, timer, now)

    def _fire(self, peer: Peer, timer: Timer, now: float) -> None:
        timers = peer.timers
        if timer is Timer.RETRANSMIT_HANDSHAKE:
            if timers.handshake_attempts > MAX_TIMER_HANDSHAKES:
                # give up (kernel: wg_expired_retransmit_handshake): stop keepalives, purge
                # staged packets, and zero keys later if nothing else does
                timers.deadlines[Timer.SEND_KEEPALIVE] = None
                if peer.staged:
                    self.drops[DropReason.HANDSHAKE_GAVE_UP] += len(peer.staged)
                    peer.staged.clear()
                if timers.deadlines[Timer.ZERO_KEY_MATERIAL] is None:
                    self.timers.arm(peer, Timer.ZERO_KEY_MATERIAL, now + ZERO_KEYS_AFTER)
                self._events.append(Event(EventKind.HANDSHAKE_GAVE_UP, peer, now))
            else:
                timers.handshake_attempts += 1
                peer.forget_source()  # in case the cached source is why (as the kernel)
                self._send_initiation(peer, now, retry=True)
        elif timer is Timer.SEND_KEEPALIVE:
            self._send_keepalive(peer, now)
            if timers.need_another_keepalive:
                timers.need_another_keepalive = False
                self.timers.arm(peer, Timer.SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)
        elif timer is Timer.NEW_HANDSHAKE:
            # we sent data and heard nothing back for KEEPALIVE + REKEY_TIMEOUT
            peer.forget_source()
            self._send_initiation(peer, now, retry=False)
        elif timer is Timer.ZERO_KEY_MATERIAL:
            self._clear_sessions(peer)
            self._events.append(Event(EventKind.KEYS_ZEROED, peer, now))
        elif timer is Timer.PERSISTENT_KEEPALIVE and timers.persistent_keepalive:
            self._send_keepalive(peer, now)
        elif timer is Timer.QUEUED_INITIATION:
            # asked for by keep-key-fresh, which already restarted the attempts
            self._send_initiation(peer, now, retry=True)

    # ------------------------------------------------------------------ sessions

    def _drop_keypairs(self, keypairs: list[Keypair]) -> None:
        for keypair in keypairs:
            self.indices.release(keypair.local_index, keypair)
            keypair.zero()

    def _clear_sessions(self, peer: Peer) -> None:
        self.indices.release(peer.handshake_index, peer)
        peer.handshake_index = 0
        peer.handshake.clear()
        self._drop_keypairs(peer.keypairs.clear())

    def _begin_session(self, peer: Peer, now: float) -> Keypair:
        index = peer.handshake_index
        send_key, receive_key, initiator = noise.derive_transport_keys(peer.handshake)
        keypair = Keypair(
            send_key, receive_key, initiator, index, peer.handshake.remote_index, now, peer
        )
        peer.handshake.clear()
        peer.handshake_index = 0
        self.indices.hand_over(index, keypair)
        self._drop_keypairs(peer.keypairs.install(keypair))
        self.timers.session_derived(peer, now)
        self._events.append(Event(EventKind.SESSION_STARTED, peer, now))
        return keypair

    # ------------------------------------------------------------------ sending

    def _send_to_peer(self, peer: Peer, datagram: bytes) -> None:
        endpoint = peer.endpoint
        if endpoint is None:
            self.drops[DropReason.NO_ENDPOINT] += 1
            return
        peer.tx_bytes += len(datagram)
        self._datagrams.append((datagram, endpoint))

    def _send_initiation(self, peer: Peer, now: float, retry: bool) -> None:
        if not retry:
            peer.timers.handshake_attempts = 0
        last = peer.last_sent_handshake
        if last is not None and now - last < REKEY_TIMEOUT:
            return
        if self.identity is None or peer.handshake.precomputed_static_static is None:
            return
        peer.last_sent_handshake = now
        self.indices.release(peer.handshake_index, peer)
        index = self.indices.allocate(peer)
        peer.handshake_index = index
        stamp = tai64n(now + self.wall_offset)
        message = noise.create_initiation(
            self.identity, peer.handshake, index, self.rng(32), stamp
        )
        if isinstance(message, DropReason):
            self.indices.release(index, peer)
            peer.handshake_index = 0
            return
        packet = message.pack_without_macs()
        peer.cookie_generator.add_macs(packet, now)
        timers = self.timers
        timers.any_authenticated_packet_traversal(peer, now)
        timers.any_authenticated_packet_sent(peer)
        self._send_to_peer(peer, bytes(packet))
        timers.handshake_initiated(peer, now)
        self._events.append(Event(EventKind.HANDSHAKE_INITIATION_SENT, peer, now))

    def _queue_initiation(self, peer: Peer, now: float) -> None:
        """Keep-key-fresh wants a new handshake (kernel:
        wg_packet_send_queued_handshake_initiation, not a retry). The kernel queues the
        initiation to a worker, so it never cuts into the packets being sent or received; here
        it leaves from the timer step at `now`, after the packets of the current call."""
        timers = peer.timers
        timers.handshake_attempts = 0
        last = peer.last_sent_handshake
        if last is not None and now - last < REKEY_TIMEOUT:
            return  # the kernel checks before queuing, and again when sending
        if timers.deadlines[_QUEUED_INITIATION] is None:
            self.timers.arm(peer, _QUEUED_INITIATION, now)

    def _send_keepalive(self, peer: Peer, now: float) -> None:
        if not peer.staged:
            peer.staged.append(b"")
        self._send_staged(peer, now)

    def _sending_keypair(self, peer: Peer, now: float) -> Keypair | None:
        keypair = peer.keypairs.current
        if (
            keypair is None
            or not keypair.valid
            or now - keypair.created >= REJECT_AFTER_TIME
            or keypair.sending_counter >= REJECT_AFTER_MESSAGES
        ):
            return None
        return keypair

    def _send_staged(self, peer: Peer, now: float) -> None:
        keypair = self._sending_keypair(peer, now)
        if keypair is None:
            self._send_initiation(peer, now, retry=False)
            return
        staged = peer.staged
        packets = list(staged)
        staged.clear()
        sealed = self._seal(peer, keypair, packets, now)
        if sealed < len(packets):  # the key ran out of counters half-way: a new session
            staged.extend(packets[sealed:])
            self._send_initiation(peer, now, retry=False)

    def _seal(self, peer: Peer, keypair: Keypair, packets: list[bytes], now: float) -> int:
        """Encrypt packets for `peer` in order with `keypair`; returns how many were sealed
        (fewer than given only when the key's counter runs out).

        The only place that frames transport data. Per packet it pads, counts and encrypts;
        what the kernel does per packet but depends only on `now` (timers, the keep-key-fresh
        rule, byte counters) is done once for the batch, with the same outcome."""
        endpoint = peer.endpoint
        if endpoint is None:
            self.drops[DropReason.NO_ENDPOINT] += len(packets)
            return len(packets)
        first = keypair.sending_counter
        # pads (to 16, capped by the MTU), frames and encrypts; stops at REJECT_AFTER_MESSAGES
        datagrams = fastpath.seal_run(keypair.send_aead, keypair.remote_index, first, packets,
                                      self.mtu)
        sealed = len(datagrams)
        counter = first + sealed
        self._datagrams.extend(zip(datagrams, repeat(endpoint, sealed)))
        sent_bytes = sum(map(len, datagrams))
        # data (not only keepalives) among what was sealed
        data = any(packets if sealed == len(packets) else packets[:sealed])
        keypair.sending_counter = counter
        if counter == first:
            return 0
        peer.tx_bytes += sent_bytes
        timers = self.timers
        timers.any_authenticated_packet_sent(peer)
        timers.any_authenticated_packet_traversal(peer, now)
        if data:
            timers.data_sent(peer, now)
        self._keep_key_fresh_send(peer, keypair, now)
        return counter - first

    def _keep_key_fresh_send(self, peer: Peer, keypair: Keypair, now: float) -> None:
        # kernel: keep_key_fresh in wg_packet_create_data_done, after the whole run is sent
        if keypair.sending_counter > REKEY_AFTER_MESSAGES or (
            keypair.i_am_initiator and now - keypair.created >= REKEY_AFTER_TIME
        ):
            self._queue_initiation(peer, now)

    def send_packet(self, packet: bytes, now: float) -> None:
        """An IP packet read from the TUN: route it by destination and encrypt it."""
        self.send_packets((packet,), now)

    def send_packets(self, packets: Iterable[bytes], now: float) -> None:
        """IP packets read from the TUN, in order; the same as `send_packet` on each.

        This is the sending hot path: packets are routed one by one (a run to one destination
        is looked up once) and each run of packets to one peer is sealed in one `_seal` call."""
        lookup_v4 = self.allowed_ips.lookup_v4
        lookup_v6 = self.allowed_ips.lookup_v6
        drops = self.drops
        last_destination = None
        peer: Peer | None = None
        run_peer: Peer | None = None
        run: list[bytes] = []
        for packet in packets:
            length = len(packet)
            version = packet[0] >> 4 if length else 0
            if version == 4 and length >= 20:
                destination = packet[16:20]
                if destination != last_destination:
                    peer = lookup_v4(destination)
                    last_destination = destination
            elif version == 6 and length >= 40:
                destination = packet[24:40]
                if destination != last_destination:
                    peer = lookup_v6(destination)
                    last_destination = destination
            else:
                drops[DropReason.BAD_OUTGOING_PACKET] += 1
                continue
            if peer is None:
                drops[DropReason.NO_ROUTE] += 1
                continue
            if peer is not run_peer:
                if run_peer is not None:  # (then run holds its packets)
                    self._transmit(run_peer, run, now)
                    run = []
                run_peer = peer
            run.append(packet)
        if run_peer is not None:
            self._transmit(run_peer, run, now)

    def _transmit(self, peer: Peer, packets: list[bytes], now: float) -> None:
        """Packets routed to `peer`: sealed now if it has a usable session and nothing
        waiting, else staged behind what waits (a handshake is started if needed)."""
        if peer.endpoint is None:
            self.drops[DropReason.NO_ENDPOINT] += len(packets)
            return
        keypair = peer.keypairs.current
        staged = peer.staged
        if (
            keypair is not None
            and not staged
            and keypair.valid
            and now - keypair.created < REJECT_AFTER_TIME
        ):
            sealed = self._seal(peer, keypair, packets, now)
            if sealed == len(packets):
                return
            packets = packets[sealed:]  # the key ran out of counters: stage the rest
        overflow = len(staged) + len(packets) - MAX_STAGED_PACKETS
        if overflow > 0:  # the oldest are dropped, as the kernel
            self.drops[DropReason.STAGED_OVERFLOW] += overflow
        staged.extend(packets)
        self._send_staged(peer, now)

    # ------------------------------------------------------------------ receiving

    def receive_datagram(self, data: bytes, src: Endpoint, now: float) -> None:
        """A UDP datagram from `src`."""
        self.receive_datagrams(((data, src),), now)

    def receive_datagrams(self, datagrams: Iterable[tuple[bytes, Endpoint]], now: float) -> None:
        """UDP datagrams in arrival order; the same as `receive_datagram` on each.

        This is the receiving hot path. Consecutive transport datagrams for one receiver index
        form a run: the session is looked up and checked once per run, each datagram is then
        checked against the replay window, decrypted and source-checked, and what depends only
        on `now` (timers, byte counters, confirming a new session) is done once per run by
        `_received_run`. Handshake messages end a run and go to `_receive_other`."""
        indices_get = self.indices.get
        drops = self.drops
        oldest_valid = now - REJECT_AFTER_TIME
        run_receiver = -1  # receiver index of the open run (-1: none)
        keypair: Keypair | None = None  # the open run's (set whenever run_data is not empty)
        check = _no_run
        newest = 0  # the newest counter the run's replay window had accepted at its start
        # the open run: datagrams that passed the replay window so far, their sources, counters
        run_data: list[bytes] = []
        run_sources: list[Endpoint] = []
        run_counters: list[int] = []
        handshakes = 0  # in this batch: `backlog` of them is load (underload.py)
        for data, src in datagrams:
            # a transport message: header + tag at least, type 4 and reserved zero (one u32)
            if len(data) >= TRANSPORT_MIN_SIZE:
                kind, receiver, counter = _unpack_header(data)
            else:
                kind = 0
            if kind != 4:
                if run_data and keypair is not None:
                    self._open_transport_run(keypair, run_data, run_sources, run_counters, now)
                    run_data, run_sources, run_counters = [], [], []
                run_receiver = -1
                if kind == MESSAGE_INITIATION or kind == MESSAGE_RESPONSE:
                    handshakes += 1
                    if handshakes == self.under_load.backlog:
                        self.under_load.note_backlog(now)
                self._receive_other(data, src, now)
                continue
            if receiver != run_receiver:
                if run_data and keypair is not None:
                    self._open_transport_run(keypair, run_data, run_sources, run_counters, now)
                    run_data, run_sources, run_counters = [], [], []
                run_receiver = -1
                owner = indices_get(receiver)
                if not isinstance(owner, Keypair):  # none, or a pending handshake's
                    drops[DropReason.UNKNOWN_RECEIVER] += 1
                    continue
                keypair = owner
                if not keypair.valid or keypair.created <= oldest_valid:
                    drops[DropReason.KEY_EXPIRED] += 1
                    continue
                run_receiver = receiver
                check = keypair.replay.check
                newest = keypair.replay.newest
            # a counter above the newest accepted passes the window: only older ones are
            # checked before decrypting. One the window refuses now it refuses for good (it
            # only moves forward), so it is dropped here without being decrypted.
            if counter <= newest and not check(counter):
                drops[DropReason.REPLAYED_COUNTER] += 1
                continue
            run_data.append(data)
            run_sources.append(src)
            run_counters.append(counter)
        if run_data and keypair is not None:
            self._open_transport_run(keypair, run_data, run_sources, run_counters, now)

    def _open_transport_run(self, keypair: Keypair, run_data: list[bytes],
                            run_sources: list[Endpoint], run_counters: list[int],
                            now: float) -> None:
        """Decrypt a run of datagrams for `keypair` in one fast-path call, then take each in
        order as the kernel would one by one: the replay window again (it has moved with the
        run's earlier datagrams: a duplicate or a now-too-old counter is a replay, as it would
        have been before decrypting), the tag, marking the window, roaming, and the inner
        packet's checks. What depends only on `now` is done once by `_received_run`."""
        lookup_v4 = self.allowed_ips.lookup_v4
        lookup_v6 = self.allowed_ips.lookup_v6
        to_tun = self._packets.append
        drops = self.drops
        events = self._events
        peer = keypair.peer
        replay = keypair.replay
        check = replay.check
        update = replay.update
        newest = replay.newest
        endpoint: Endpoint | None = None
        authenticated = 0  # datagrams of the run that passed the AEAD and the replay window
        run_bytes = run_data_packets = 0
        last_source = None  # inner source address last looked up, and its owner
        owner = None
        plaintexts = fastpath.open_run(keypair.receive_aead, run_data)
        for plaintext, counter, src, data in zip(plaintexts, run_counters, run_sources,
                                                 run_data):
            if counter <= newest and not check(counter):
                drops[DropReason.REPLAYED_COUNTER] += 1
                continue
            if plaintext is None:
                drops[DropReason.DECRYPT_DATA] += 1
                continue
            if not update(counter):
                drops[DropReason.REPLAYED_COUNTER] += 1
                continue
            if counter > newest:  # noqa: PLR1730 -- a compare is cheaper than calling max()
                newest = counter
            # authenticated from here on
            if not authenticated:
                endpoint = peer.endpoint
            if src is not endpoint:  # (datagrams of one GRO read share one src object)
                if src != endpoint:  # roaming: follow authenticated packets only
                    if endpoint is not None:
                        events.append(Event(EventKind.ENDPOINT_CHANGED, peer, now))
                    peer.endpoint = src
                endpoint = src
            if not authenticated:
                # after the endpoint, as the kernel (consume_data_done): staged packets that
                # confirming a new session releases go where the confirming datagram came from
                self._authenticated_run(keypair, now)
            authenticated += 1
            run_bytes += len(data)
            if not plaintext:
                continue  # keepalive
            run_data_packets += 1
            size = len(plaintext)
            version = plaintext[0] >> 4
            if version == 4 and size >= 20:
                total = (plaintext[2] << 8) | plaintext[3]
                source = plaintext[12:16]
                if source != last_source:  # a run from one source is looked up once
                    owner = lookup_v4(source)
                    last_source = source
                minimum = 20
            elif version == 6 and size >= 40:
                total = 40 + ((plaintext[4] << 8) | plaintext[5])
                source = plaintext[8:24]
                if source != last_source:
                    owner = lookup_v6(source)
                    last_source = source
                minimum = 40
            else:
                drops[DropReason.BAD_INNER_PACKET] += 1
                continue
            if total < minimum or total > size:
                drops[DropReason.BAD_INNER_PACKET] += 1
                continue
            if owner is not peer:
                drops[DropReason.DISALLOWED_SOURCE] += 1
                continue
            to_tun(plaintext if total == size else plaintext[:total])
        if authenticated:
            self._received_run(peer, run_bytes, run_data_packets, now)

    def _authenticated_run(self, keypair: Keypair, now: float) -> None:
        """The first datagram of a run passed authentication: confirm a new session, and let
        an initiator renew a key about to be rejected (kernel: keep_key_fresh on receive)."""
        peer = keypair.peer
        keypairs = peer.keypairs
        timers = peer.timers
        if keypair is keypairs.next:
            self._drop_keypairs(keypairs.confirm(keypair))
            self.timers.handshake_complete(peer, now)
            if peer.staged:
                self._send_staged(peer, now)
        if (
            keypair.i_am_initiator
            and not timers.sent_lastminute_handshake
            and keypair is keypairs.current
            and now - keypair.created >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        ):
            timers.sent_lastminute_handshake = True
            self._queue_initiation(peer, now)

    def _received_run(self, peer: Peer, received_bytes: int, data_packets: int, now: float) -> None:
        """Timers and counters of a run of authenticated datagrams, as the kernel's
        per-packet hooks would leave them (they depend on `now` alone)."""
        peer.rx_bytes += received_bytes
        timers = self.timers
        timers.any_authenticated_packet_received(peer)
        timers.any_authenticated_packet_traversal(peer, now)
        if data_packets:
            timers.data_received(peer, now, data_packets)

    def _receive_other(self, data: bytes, src: Endpoint, now: float) -> None:
        """Anything but a well-formed transport header: handshake messages or garbage."""
        kind = message_type(data)
        if isinstance(kind, DropReason):
            self.drops[kind] += 1
        elif kind == MESSAGE_COOKIE_REPLY:
            self._receive_cookie_reply(data, now)
        else:
            self._receive_handshake(kind, data, src, now)

    # --- handshake messages

    def _receive_handshake(self, kind: int, data: bytes, src: Endpoint, now: float) -> None:
        """An initiation or a response: under load, a flood's fast path first, then its MACs
        decide, in the kernel's order (mac1, then under load mac2, then for a valid mac2 only
        the source's rate limit), see CookieChecker.validate and underload.py."""
        if self.identity is None:
            self.drops[DropReason.NO_PRIVATE_KEY] += 1
            return
        under_load = self.under_load
        if under_load.refuses_before_mac1(data, src[0], now):
            self.drops[DropReason.COOKIE_REPLY_LIMITED] += 1
            return
        state = self.cookie_checker.validate(
            data, src, now, self.rng, lambda: under_load.count(now),
            under_load.handshake_limiter,
        )
        if state is CookieMacState.VALID_MAC_BUT_NO_COOKIE and under_load.active(now):
            self._send_cookie_reply(data, src, now)  # prove your address first; no DH work
        elif (
            state is CookieMacState.VALID_MAC_WITH_COOKIE
            or state is CookieMacState.VALID_MAC_BUT_NO_COOKIE  # not under load
        ):
            if kind == MESSAGE_INITIATION:
                self._receive_initiation(data, src, now)
            else:
                self._receive_response(data, src, now)
        elif state is CookieMacState.VALID_MAC_WITH_COOKIE_BUT_RATELIMITED:
            self.drops[DropReason.RATE_LIMITED] += 1
        else:
            self.drops[DropReason.BAD_MAC1] += 1

    def _send_cookie_reply(self, data: bytes, src: Endpoint, now: float) -> None:
        """Under load, a handshake message without a valid mac2 is answered with a cookie
        (kernel: wg_packet_send_handshake_cookie, for initiations and responses alike), within
        the cookie-reply limits."""
        if not self.under_load.allows_cookie_reply(src[0], now):
            self.drops[DropReason.COOKIE_REPLY_LIMITED] += 1
            return
        sender_index = int.from_bytes(data[4:8], "little")
        reply = self.cookie_checker.create_reply(data, sender_index, src, now, self.rng)
        self._datagrams.append((reply, src))
        self.drops[DropReason.COOKIE_SENT if mac2_missing(data) else DropReason.BAD_MAC2] += 1

    def _receive_initiation(self, data: bytes, src: Endpoint, now: float) -> None:
        assert self.identity is not None
        message = parse_initiation(data)
        result = noise.consume_initiation_static(self.identity, message)
        if isinstance(result, DropReason):
            self.drops[result] += 1
            return
        remote_static, chaining_key, hash_ = result
        peer = self.peers.get(remote_static)
        if peer is None:
            self.drops[DropReason.UNKNOWN_PEER] += 1
            return
        consumed = noise.consume_initiation_finish(
            peer.handshake, message, chaining_key, hash_, now, HANDSHAKE_INITIATION_RATE
        )
        if isinstance(consumed, DropReason):
            self.drops[consumed] += 1
            return
        # authenticated: apply
        noise.apply_initiation(peer.handshake, consumed, now)
        peer.rx_bytes += len(data)
        peer.endpoint = src
        timers = self.timers
        timers.any_authenticated_packet_received(peer)
        timers.any_authenticated_packet_traversal(peer, now)
        # answer
        self.indices.release(peer.handshake_index, peer)
        index = self.indices.allocate(peer)
        peer.handshake_index = index
        response = noise.create_response(peer.handshake, index, self.rng(32))
        if isinstance(response, DropReason):
            self._clear_sessions(peer)
            self.drops[response] += 1
            return
        packet = response.pack_without_macs()
        peer.cookie_generator.add_macs(packet, now)
        self._begin_session(peer, now)
        timers.any_authenticated_packet_traversal(peer, now)
        timers.any_authenticated_packet_sent(peer)
        peer.last_sent_handshake = now
        self._send_to_peer(peer, bytes(packet))
        self._events.append(Event(EventKind.HANDSHAKE_RESPONSE_SENT, peer, now))

    def _receive_response(self, data: bytes, src: Endpoint, now: float) -> None:
        assert self.identity is not None
        message = parse_response(data)
        peer = self.indices.get(message.receiver_index)
        if not isinstance(peer, Peer):  # none, or a keypair's: no handshake pending there
            self.drops[DropReason.UNEXPECTED_RESPONSE] += 1
            return
        consumed = noise.consume_response(self.identity, peer.handshake, message)
        if isinstance(consumed, DropReason):
            self.drops[consumed] += 1
            return
        noise.apply_response(peer.handshake, consumed)
        self._begin_session(peer, now)
        peer.rx_bytes += len(data)
        peer.endpoint = src
        timers = self.timers
        timers.any_authenticated_packet_received(peer)
        timers.any_authenticated_packet_traversal(peer, now)
        timers.handshake_complete(peer, now)
        # confirm the session to the responder: staged data, or a keepalive
        self._send_keepalive(peer, now)

    def _receive_cookie_reply(self, data: bytes, now: float) -> None:
        reply = parse_cookie_reply(data)
        owner = self.indices.get(reply.receiver_index)
        if owner is None:
            self.drops[DropReason.UNKNOWN_RECEIVER] += 1
            return
        peer = owner if isinstance(owner, Peer) else owner.peer
        if not peer.cookie_generator.consume_reply(data, now):
            self.drops[DropReason.BAD_COOKIE_REPLY] += 1
