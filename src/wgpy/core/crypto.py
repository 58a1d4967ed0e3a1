"""Cryptographic primitives of WireGuard (whitepaper 5.4), as thin wrappers.

X25519 and ChaCha20-Poly1305 come from `cryptography`; BLAKE2s from hashlib. HChaCha20, which
no library exposes, is derived here from the library's ChaCha20 block (for the cookie's
XChaCha20-Poly1305) and pinned by the published test vectors in tests/unit/core/test_crypto_vectors.py.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_LEN = 32
HASH_LEN = 32
MAC_LEN = 16
TAG_LEN = 16

_blake2s = hashlib.blake2s
_ZERO_KEY = bytes(32)


class CryptoError(Exception):
    """Authentication or key agreement failed. Carries no key material."""


# --- hashing -----------------------------------------------------------------------

def HASH(data: bytes) -> bytes:
    return _blake2s(data).digest()


def MAC(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2s with a 16-byte digest."""
    return _blake2s(data, digest_size=16, key=key).digest()


def HMAC(key: bytes, data: bytes) -> bytes:
    # hmac.digest: the one-shot form, no HMAC object (~2.9 vs ~4.1 us; ~20 per handshake)
    return hmac.digest(key, data, _blake2s)


def KDF1(key: bytes, data: bytes) -> bytes:
    t0 = HMAC(key, data)
    return HMAC(t0, b"\x01")


def KDF2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    t0 = HMAC(key, data)
    t1 = HMAC(t0, b"\x01")
    t2 = HMAC(t0, t1 + b"\x02")
    return t1, t2


def KDF3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    t0 = HMAC(key, data)
    t1 = HMAC(t0, b"\x01")
    t2 = HMAC(t0, t1 + b"\x02")
    t3 = HMAC(t0, t2 + b"\x03")
    return t1, t2, t3


# --- Curve25519 ----------------------------------------------------------------------

def public_key(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def clamp(private: bytes) -> bytes:
    """A Curve25519 private key clamped (RFC 7748 5): the one place that does it. The kernel
    and wireguard-go store and show private keys clamped."""
    clamped = bytearray(private)
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    return bytes(clamped)


def generate_keypair(rng_bytes: bytes) -> tuple[bytes, bytes]:
    """A keypair from 32 random bytes supplied by the caller (the core owns no RNG)."""
    private = clamp(rng_bytes)
    return private, public_key(private)


PrivateKey = X25519PrivateKey


def load_private_key(private: bytes) -> PrivateKey:
    """The library's key object for 32 private bytes. Loading one costs about as much as a DH
    (the library derives the public key), so a key used more than once is loaded once: the
    static key per private-key change, an ephemeral per handshake."""
    return X25519PrivateKey.from_private_bytes(private)


def generate_ephemeral(rng_bytes: bytes) -> tuple[PrivateKey, bytes]:
    """DH-GENERATE for a handshake: (key object, public bytes) from 32 caller-supplied random
    bytes; the same keypair as generate_keypair, loaded once for the DHs that follow."""
    key = X25519PrivateKey.from_private_bytes(clamp(rng_bytes))
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def dh(private: bytes | PrivateKey, public: bytes) -> bytes:
    """X25519; an all-zero result (a low-order point) is an error, as in the kernel.

    `private` is 32 bytes or a loaded key (load_private_key, generate_ephemeral)."""
    try:
        key = (X25519PrivateKey.from_private_bytes(private)
               if isinstance(private, (bytes, bytearray)) else private)
        shared = key.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        # cryptography refuses all-zero shared secrets itself
        raise CryptoError("invalid public key") from None
    if hmac.compare_digest(shared, _ZERO_KEY):
        raise CryptoError("invalid public key")
    return shared


# --- ChaCha20-Poly1305 ------------------------------------------------------------------

# nonce(counter) -> the 96-bit nonce: 32 zero bits then the 64-bit little-endian counter.
# Bound straight to the struct's pack: it runs once per transport packet, and a Python wrapper
# would add a frame to each.
nonce = struct.Struct("<4xQ").pack


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce(counter), ciphertext, ad)
    except InvalidTag:
        raise CryptoError("authentication failed") from None


# --- HChaCha20 / XChaCha20-Poly1305 ---------------------------------------------------------

_MASK = 0xFFFFFFFF
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_ZERO_BLOCK = bytes(64)
_words16 = struct.Struct("<16I").unpack
_words4 = struct.Struct("<4I").unpack
_pack8 = struct.Struct("<8I").pack


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha, 2.2): the ChaCha20 core over
    (constants, key, nonce16) without the final addition, output words 0..3 and 12..15.

    No library exposes it, but one ChaCha20 block from `cryptography` is exactly that core
    plus the input state: with the 16-byte nonce as the block's counter||nonce words, the
    keystream word i is core[i] + state[i]. Subtracting the known state words (the constants
    and the nonce) leaves HChaCha20's output -- the ChaCha rounds stay the library's (and
    ~100x faster than rounds written in Python). Pinned by the draft's vectors in
    tests/unit/core/test_crypto_vectors.py."""
    if len(key) != 32 or len(nonce16) != 16:
        raise ValueError("HChaCha20 takes a 32-byte key and a 16-byte nonce")
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(_ZERO_BLOCK)
    words = _words16(block)
    nonce_words = _words4(nonce16)
    return _pack8(
        (words[0] - _SIGMA[0]) & _MASK, (words[1] - _SIGMA[1]) & _MASK,
        (words[2] - _SIGMA[2]) & _MASK, (words[3] - _SIGMA[3]) & _MASK,
        (words[12] - nonce_words[0]) & _MASK, (words[13] - nonce_words[1]) & _MASK,
        (words[14] - nonce_words[2]) & _MASK, (words[15] - nonce_words[3]) & _MASK,
    )


def _xchacha_subkey(key: bytes, nonce24: bytes) -> tuple[bytes, bytes]:
    if len(nonce24) != 24:
        raise ValueError("XChaCha20 takes a 24-byte nonce")
    return hchacha20(key, nonce24[:16]), b"\x00\x00\x00\x00" + nonce24[16:]


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> bytes:
    subkey, n = _xchacha_subkey(key, nonce24)
    return ChaCha20Poly1305(subkey).encrypt(n, plaintext, ad)


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    subkey, n = _xchacha_subkey(key, nonce24)
    try:
        return ChaCha20Poly1305(subkey).decrypt(n, ciphertext, ad)
    except InvalidTag:
        raise CryptoError("authentication failed") from None
