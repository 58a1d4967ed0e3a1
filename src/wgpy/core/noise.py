"""Noise_IKpsk2 handshake (whitepaper 5.4.2-5.4.4), as state transitions on a per-peer record.

Theory of operation: each peer owns one `Handshake`. Its `state` moves

    ZEROED --create_initiation--> CREATED_INITIATION --consume_response--> (session, ZEROED)
    ZEROED/any --consume_initiation--> CONSUMED_INITIATION --create_response--> (session, ZEROED)

A transition either completes and updates the record, or returns a `DropReason` and leaves the
record untouched: nothing from the network changes state before it authenticated. The steps
carry the whitepaper's pseudocode as comments so they can be reviewed line by line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from wgpy.constants import CONSTRUCTION, IDENTIFIER
from wgpy.core import crypto
from wgpy.core.crypto import HASH, KDF1, KDF2, KDF3, CryptoError, aead_decrypt, aead_encrypt
from wgpy.core.messages import Initiation, Response
from wgpy.errors import DropReason

# Ci = HASH(CONSTRUCTION); Hi = HASH(Ci || IDENTIFIER) -- the same for every handshake.
INITIAL_CHAIN_KEY = HASH(CONSTRUCTION)
INITIAL_HASH = HASH(INITIAL_CHAIN_KEY + IDENTIFIER)
ZERO_KEY = bytes(32)


class HandshakeState(enum.Enum):
    ZEROED = 0
    CREATED_INITIATION = 1
    CONSUMED_INITIATION = 2
    CREATED_RESPONSE = 3
    CONSUMED_RESPONSE = 4


@dataclass
class StaticIdentity:
    """The device's own static keypair."""

    private_key: bytes = field(repr=False)  # secrets never in a repr (logs, tracebacks)
    public_key: bytes
    # the private key loaded once: each DH with it then skips re-deriving the key (~50 us,
    # as much as the DH itself) -- per peer on a key change, per handshake message received
    key: crypto.PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key = crypto.load_private_key(self.private_key)


@dataclass
class Handshake:
    remote_static: bytes
    # secret fields are left out of the repr, which may end up in a log or a traceback
    preshared_key: bytes = field(default=ZERO_KEY, repr=False)
    # DH(S_priv_local, S_pub_remote), precomputed when either key changes (kernel does the same)
    precomputed_static_static: bytes | None = field(default=None, repr=False)
    state: HandshakeState = HandshakeState.ZEROED
    chaining_key: bytes = field(default=b"", repr=False)
    hash: bytes = b""
    # the loaded key of our ephemeral while a handshake is pending (b"" when none)
    ephemeral_private: bytes | crypto.PrivateKey = field(default=b"", repr=False)
    remote_ephemeral: bytes = b""
    local_index: int = 0
    remote_index: int = 0
    # greatest TAI64N timestamp seen in an initiation from this peer (replay protection)
    latest_timestamp: bytes = bytes(12)
    last_initiation_consumption: float | None = None
    # H(responder static) precomputed: Hi = HASH(Hi || S_pub_r) is peer specific
    _remote_static_hash: bytes = field(default=b"", repr=False)

    def clear(self) -> None:
        self.state = HandshakeState.ZEROED
        self.chaining_key = b""
        self.hash = b""
        self.ephemeral_private = b""
        self.remote_ephemeral = b""
        self.local_index = 0
        self.remote_index = 0

    def precompute(self, local: StaticIdentity | None) -> None:
        """Recompute DH(S_local, S_remote); None when it is invalid or we have no key."""
        self._remote_static_hash = HASH(INITIAL_HASH + self.remote_static)
        self.precomputed_static_static = None
        if local is None:
            return
        try:
            self.precomputed_static_static = crypto.dh(local.key, self.remote_static)
        except CryptoError:
            self.precomputed_static_static = None


def _mix_hash(h: bytes, data: bytes) -> bytes:
    return HASH(h + data)


# --- initiator: message 1 -------------------------------------------------------------------

def create_initiation(
    local: StaticIdentity,
    hs: Handshake,
    local_index: int,
    ephemeral_seed: bytes,
    timestamp: bytes,
) -> Initiation | DropReason:
    if hs.precomputed_static_static is None:
        return DropReason.NO_PRIVATE_KEY
    # Ci = HASH(CONSTRUCTION); Hi = HASH(Ci || IDENTIFIER); Hi = HASH(Hi || S_pub_r)
    c = INITIAL_CHAIN_KEY
    h = hs._remote_static_hash or _mix_hash(INITIAL_HASH, hs.remote_static)
    # (E_priv_i, E_pub_i) = DH-GENERATE(); Ci = KDF1(Ci, E_pub_i); Hi = HASH(Hi || E_pub_i)
    e_priv, e_pub = crypto.generate_ephemeral(ephemeral_seed)
    c = KDF1(c, e_pub)
    h = _mix_hash(h, e_pub)
    # (Ci, k) = KDF2(Ci, DH(E_priv_i, S_pub_r)); static = AEAD(k, 0, S_pub_i, Hi); Hi = HASH(Hi || static)
    try:
        es = crypto.dh(e_priv, hs.remote_static)
    except CryptoError:
        return DropReason.DECRYPT_HANDSHAKE
    c, k = KDF2(c, es)
    encrypted_static = aead_encrypt(k, 0, local.public_key, h)
    h = _mix_hash(h, encrypted_static)
    # (Ci, k) = KDF2(Ci, DH(S_priv_i, S_pub_r)); timestamp = AEAD(k, 0, TAI64N(), Hi); Hi = HASH(Hi || timestamp)
    c, k = KDF2(c, hs.precomputed_static_static)
    encrypted_timestamp = aead_encrypt(k, 0, timestamp, h)
    h = _mix_hash(h, encrypted_timestamp)

    hs.state = HandshakeState.CREATED_INITIATION
    hs.chaining_key, hs.hash = c, h
    hs.ephemeral_private = e_priv
    hs.local_index = local_index
    hs.remote_index = 0
    return Initiation(local_index, e_pub, encrypted_static, encrypted_timestamp, bytes(16), bytes(16))


# --- responder: consume message 1 -------------------------------------------------------------

@dataclass(slots=True)
class ConsumedInitiation:
    """An authenticated initiation, not yet applied to its peer's handshake record."""

    remote_static: bytes
    chaining_key: bytes = field(repr=False)
    hash: bytes
    remote_ephemeral: bytes
    sender_index: int
    timestamp: bytes


def consume_initiation_static(
    local: StaticIdentity, msg: Initiation
) -> tuple[bytes, bytes, bytes] | DropReason:
    """First half of consuming an initiation: recover the initiator's static key.

    Returns (remote_static, chaining_key, hash) so the caller can find the peer."""
    c = INITIAL_CHAIN_KEY
    h = _mix_hash(INITIAL_HASH, local.public_key)
    # Cr = KDF1(Cr, E_pub_i); Hr = HASH(Hr || E_pub_i)
    c = KDF1(c, msg.ephemeral)
    h = _mix_hash(h, msg.ephemeral)
    # (Cr, k) = KDF2(Cr, DH(S_priv_r, E_pub_i)); S_pub_i = AEAD-DEC(k, 0, static, Hr)
    try:
        es = crypto.dh(local.key, msg.ephemeral)
        c, k = KDF2(c, es)
        remote_static = aead_decrypt(k, 0, msg.encrypted_static, h)
    except CryptoError:
        return DropReason.DECRYPT_HANDSHAKE
    h = _mix_hash(h, msg.encrypted_static)
    return remote_static, c, h


def consume_initiation_finish(
    hs: Handshake, msg: Initiation, chaining_key: bytes, hash_: bytes, now: float,
    min_interval: float,
) -> ConsumedInitiation | DropReason:
    """Second half: authenticate the timestamp with the peer's static-static DH, check replay
    and flood. Does not modify `hs`; `apply_initiation` does, once the caller accepts it."""
    if hs.precomputed_static_static is None:
        return DropReason.DECRYPT_HANDSHAKE
    # (Cr, k) = KDF2(Cr, DH(S_priv_r, S_pub_i)); timestamp = AEAD-DEC(k, 0, timestamp, Hr)
    c, k = KDF2(chaining_key, hs.precomputed_static_static)
    try:
        timestamp = aead_decrypt(k, 0, msg.encrypted_timestamp, hash_)
    except CryptoError:
        return DropReason.DECRYPT_HANDSHAKE
    h = _mix_hash(hash_, msg.encrypted_timestamp)
    # Replayed initiations: the timestamp must be strictly greater than any seen before.
    if timestamp <= hs.latest_timestamp:
        return DropReason.REPLAYED_TIMESTAMP
    # Flood: at most INITIATIONS_PER_SECOND consumed initiations per peer.
    last = hs.last_initiation_consumption
    if last is not None and now - last < min_interval:
        return DropReason.INITIATION_FLOOD
    return ConsumedInitiation(hs.remote_static, c, h, msg.ephemeral, msg.sender_index, timestamp)


def apply_initiation(hs: Handshake, consumed: ConsumedInitiation, now: float) -> None:
    hs.state = HandshakeState.CONSUMED_INITIATION
    hs.chaining_key, hs.hash = consumed.chaining_key, consumed.hash
    hs.remote_ephemeral = consumed.remote_ephemeral
    hs.remote_index = consumed.sender_index
    hs.latest_timestamp = consumed.timestamp
    hs.last_initiation_consumption = now


# --- responder: message 2 ----------------------------------------------------------------------

def create_response(
    hs: Handshake, local_index: int, ephemeral_seed: bytes
) -> Response | DropReason:
    if hs.state is not HandshakeState.CONSUMED_INITIATION:
        return DropReason.UNEXPECTED_RESPONSE
    c, h = hs.chaining_key, hs.hash
    # (E_priv_r, E_pub_r) = DH-GENERATE(); Cr = KDF1(Cr, E_pub_r); Hr = HASH(Hr || E_pub_r)
    e_priv, e_pub = crypto.generate_ephemeral(ephemeral_seed)
    c = KDF1(c, e_pub)
    h = _mix_hash(h, e_pub)
    try:
        # Cr = KDF1(Cr, DH(E_priv_r, E_pub_i)); Cr = KDF1(Cr, DH(E_priv_r, S_pub_i))
        c = KDF1(c, crypto.dh(e_priv, hs.remote_ephemeral))
        c = KDF1(c, crypto.dh(e_priv, hs.remote_static))
    except CryptoError:
        return DropReason.DECRYPT_HANDSHAKE
    # (Cr, tau, k) = KDF3(Cr, Q); Hr = HASH(Hr || tau); empty = AEAD(k, 0, e, Hr); Hr = HASH(Hr || empty)
    c, tau, k = KDF3(c, hs.preshared_key)
    h = _mix_hash(h, tau)
    encrypted_nothing = aead_encrypt(k, 0, b"", h)
    h = _mix_hash(h, encrypted_nothing)

    hs.state = HandshakeState.CREATED_RESPONSE
    hs.chaining_key, hs.hash = c, h
    hs.ephemeral_private = e_priv
    hs.local_index = local_index
    return Response(local_index, hs.remote_index, e_pub, encrypted_nothing, bytes(16), bytes(16))


# --- initiator: consume message 2 ---------------------------------------------------------------

@dataclass(slots=True)
class ConsumedResponse:
    chaining_key: bytes = field(repr=False)
    hash: bytes
    remote_ephemeral: bytes
    sender_index: int


def consume_response(
    local: StaticIdentity, hs: Handshake, msg: Response
) -> ConsumedResponse | DropReason:
    if hs.state is not HandshakeState.CREATED_INITIATION or msg.receiver_index != hs.local_index:
        return DropReason.UNEXPECTED_RESPONSE
    c, h = hs.chaining_key, hs.hash
    # Ci = KDF1(Ci, E_pub_r); Hi = HASH(Hi || E_pub_r)
    c = KDF1(c, msg.ephemeral)
    h = _mix_hash(h, msg.ephemeral)
    try:
        # Ci = KDF1(Ci, DH(E_priv_i, E_pub_r)); Ci = KDF1(Ci, DH(S_priv_i, E_pub_r))
        c = KDF1(c, crypto.dh(hs.ephemeral_private, msg.ephemeral))
        c = KDF1(c, crypto.dh(local.key, msg.ephemeral))
        # (Ci, tau, k) = KDF3(Ci, Q); Hi = HASH(Hi || tau); AEAD-DEC(k, 0, empty, Hi)
        c, tau, k = KDF3(c, hs.preshared_key)
        h = _mix_hash(h, tau)
        aead_decrypt(k, 0, msg.encrypted_nothing, h)
    except CryptoError:
        return DropReason.DECRYPT_HANDSHAKE
    h = _mix_hash(h, msg.encrypted_nothing)
    return ConsumedResponse(c, h, msg.ephemeral, msg.sender_index)


def apply_response(hs: Handshake, consumed: ConsumedResponse) -> None:
    hs.state = HandshakeState.CONSUMED_RESPONSE
    hs.chaining_key, hs.hash = consumed.chaining_key, consumed.hash
    hs.remote_ephemeral = consumed.remote_ephemeral
    hs.remote_index = consumed.sender_index


# --- transport keys (5.4.5) ------------------------------------------------------------------------

def derive_transport_keys(hs: Handshake) -> tuple[bytes, bytes, bool]:
    """(send_key, receive_key, i_am_initiator) from a completed handshake; wipes the record.

    (T_send_i = T_recv_r, T_recv_i = T_send_r) = KDF2(C, e)"""
    first, second = KDF2(hs.chaining_key, b"")
    initiator = hs.state is HandshakeState.CONSUMED_RESPONSE
    if hs.state not in (HandshakeState.CONSUMED_RESPONSE, HandshakeState.CREATED_RESPONSE):
        raise ValueError("no completed handshake to derive keys from")
    hs.chaining_key = hs.hash = hs.ephemeral_private = hs.remote_ephemeral = b""
    hs.state = HandshakeState.ZEROED
    return (first, second, True) if initiator else (second, first, False)

