"""Known-answer tests of core/crypto.py with published vectors.

Sources (vector bytes transcribed from these documents, not generated here):
- RFC 7748 (X25519), sections 5.2 and 6.1;
- RFC 8439 (ChaCha20-Poly1305), sections 2.8.2 and A.5 (stored copy: floodyberry/poly1305-donna
  rfc8439.txt);
- RFC 7693 (BLAKE2), appendix B, and the BLAKE2 reference KAT file blake2s-kat.txt (keyed);
- draft-irtf-cfrg-xchacha-03, sections 2.2.1 (HChaCha20) and A.3.1 (AEAD_XChaCha20_Poly1305)
  (stored copy: bikeshedders/xchacha-rfc draft-irtf-cfrg-xchacha-rfc-03.txt);
- WireGuard's initial chaining key and hash as hard-coded by boringtun (src/noise/handshake.rs,
  INITIAL_CHAIN_KEY / INITIAL_CHAIN_HASH), an implementation that interoperates with the kernel.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from wgpy.constants import CONSTRUCTION, IDENTIFIER
from wgpy.core import crypto


def h(text: str) -> bytes:
    """Hex with any whitespace, and RFC hex-dump offsets ("016  ab cd ...") dropped."""
    words = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) > 1 and len(parts[0]) == 3 and parts[0].isdigit():
            parts = parts[1:]  # an offset column
        words.extend(parts)
    return bytes.fromhex("".join(words))


LADIES = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)

# --- X25519, RFC 7748 ---------------------------------------------------------------------

RFC7748_5_2 = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        # top bit set on purpose in the RFC: implementations must mask it
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]


@pytest.mark.parametrize(("scalar", "u", "expected"), RFC7748_5_2)
def test_x25519_rfc7748_section_5_2(scalar: str, u: str, expected: str) -> None:
    assert crypto.dh(h(scalar), h(u)) == h(expected)


def test_x25519_rfc7748_iterated() -> None:
    """Section 5.2, second kind: k = u = 9; repeat k, u = X25519(k, u), k."""
    k = u = (9).to_bytes(32, "little")
    k, u = crypto.dh(k, u), k
    assert k == h("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    for _ in range(999):
        k, u = crypto.dh(k, u), k
    assert k == h("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")


def test_x25519_rfc7748_section_6_1_alice_and_bob() -> None:
    alice_private = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    alice_public = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_private = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    bob_public = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert crypto.public_key(alice_private) == alice_public
    assert crypto.public_key(bob_private) == bob_public
    assert crypto.dh(alice_private, bob_public) == shared
    assert crypto.dh(bob_private, alice_public) == shared


_P = 2**255 - 19


@pytest.mark.parametrize(
    "u",
    [0, 1, _P, _P + 1],  # 0 and 1 are low-order points; p and p+1 are their non-canonical forms
    ids=["zero", "one", "p", "p+1"],
)
def test_dh_refuses_low_order_points(u: int) -> None:
    alice_private = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    with pytest.raises(crypto.CryptoError):
        crypto.dh(alice_private, u.to_bytes(32, "little"))


def test_generate_keypair_clamps_and_matches_public_key() -> None:
    private, public = crypto.generate_keypair(b"\xff" * 32)
    assert private[0] & 7 == 0 and private[31] & 0x80 == 0 and private[31] & 0x40
    assert public == crypto.public_key(private)


# --- ChaCha20-Poly1305, RFC 8439 ----------------------------------------------------------

RFC8439_KEY = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
RFC8439_AAD = h("50515253c0c1c2c3c4c5c6c7")
RFC8439_2_8_2_CIPHERTEXT = h(
    """
    000  d3 1a 8d 34 64 8e 60 db 7b 86 af bc 53 ef 7e c2
    016  a4 ad ed 51 29 6e 08 fe a9 e2 b5 a7 36 ee 62 d6
    032  3d be a4 5e 8c a9 67 12 82 fa fb 69 da 92 72 8b
    048  1a 71 de 0a 9e 06 0b 29 05 d6 a5 b6 7e cd 3b 36
    064  92 dd bd 7f 2d 77 8b 8c 98 03 ae e3 28 09 1b 58
    080  fa b3 24 e4 fa d6 75 94 55 85 80 8b 48 31 d7 bc
    096  3f f4 de f0 8e 4b 7a 9d e5 76 d2 65 86 ce c6 4b
    112  61 16
    """
)
RFC8439_2_8_2_TAG = h("1ae10b594f09e26a7e902ecbd0600691")


def test_chacha20poly1305_rfc8439_2_8_2_through_the_library() -> None:
    """The nonce there is constant 07000000 || IV 40..47: not our zero-prefixed counter form,
    so this pins the library itself; A.5 below goes through our own aead_* functions."""
    nonce = h("07000000") + h("4041424344454647")
    sealed = ChaCha20Poly1305(RFC8439_KEY).encrypt(nonce, LADIES, RFC8439_AAD)
    assert sealed == RFC8439_2_8_2_CIPHERTEXT + RFC8439_2_8_2_TAG


RFC8439_A5_KEY = h("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
RFC8439_A5_AAD = h("f33388860000000000004e91")
RFC8439_A5_CIPHERTEXT = h(
    """
    000  64 a0 86 15 75 86 1a f4 60 f0 62 c7 9b e6 43 bd
    016  5e 80 5c fd 34 5c f3 89 f1 08 67 0a c7 6c 8c b2
    032  4c 6c fc 18 75 5d 43 ee a0 9e e9 4e 38 2d 26 b0
    048  bd b7 b7 3c 32 1b 01 00 d4 f0 3b 7f 35 58 94 cf
    064  33 2f 83 0e 71 0b 97 ce 98 c8 a8 4a bd 0b 94 81
    080  14 ad 17 6e 00 8d 33 bd 60 f9 82 b1 ff 37 c8 55
    096  97 97 a0 6e f4 f0 ef 61 c1 86 32 4e 2b 35 06 38
    112  36 06 90 7b 6a 7c 02 b0 f9 f6 15 7b 53 c8 67 e4
    128  b9 16 6c 76 7b 80 4d 46 a5 9b 52 16 cd e7 a4 e9
    144  90 40 c5 a4 04 33 22 5e e2 82 a1 b0 a0 6c 52 3e
    160  af 45 34 d7 f8 3f a1 15 5b 00 47 71 8c bc 54 6a
    176  0d 07 2b 04 b3 56 4e ea 1b 42 22 73 f5 48 27 1a
    192  0b b2 31 60 53 fa 76 99 19 55 eb d6 31 59 43 4e
    208  ce bb 4e 46 6d ae 5a 10 73 a6 72 76 27 09 7a 10
    224  49 e6 17 d9 1d 36 10 94 fa 68 f0 ff 77 98 71 30
    240  30 5b ea ba 2e da 04 df 99 7b 71 4d 6c 6f 2c 29
    256  a6 ad 5c b4 02 2b 02 70 9b
    """
)
RFC8439_A5_TAG = h("eead9d67890cbb22392336fea1851f38")
RFC8439_A5_PLAINTEXT = (
    "Internet-Drafts are draft documents valid for a maximum of six months and may be "
    "updated, replaced, or obsoleted by other documents at any time. It is inappropriate to "
    "use Internet-Drafts as reference material or to cite them other than as "
    "/\u201cwork in progress./\u201d"
).encode()


def test_chacha20poly1305_rfc8439_a5_through_our_counter_nonce() -> None:
    """A.5's nonce is 00000000 || 01..08: exactly WireGuard's 32 zero bits + 64-bit LE counter."""
    counter = int.from_bytes(bytes(range(1, 9)), "little")
    assert crypto.nonce(counter) == h("000000000102030405060708")
    sealed = RFC8439_A5_CIPHERTEXT + RFC8439_A5_TAG
    assert len(RFC8439_A5_PLAINTEXT) == len(RFC8439_A5_CIPHERTEXT) == 265
    assert crypto.aead_decrypt(RFC8439_A5_KEY, counter, sealed, RFC8439_A5_AAD) == (
        RFC8439_A5_PLAINTEXT
    )
    assert crypto.aead_encrypt(RFC8439_A5_KEY, counter, RFC8439_A5_PLAINTEXT, RFC8439_A5_AAD) == (
        sealed
    )


def test_nonce_layout() -> None:
    assert crypto.nonce(1) == b"\0" * 4 + (1).to_bytes(8, "little")
    assert crypto.nonce(2**64 - 1) == b"\0" * 4 + b"\xff" * 8
    assert len(crypto.nonce(0)) == 12


def test_aead_round_trip_and_tampering() -> None:
    key = bytes(range(32))
    sealed = crypto.aead_encrypt(key, 7, b"packet", b"header")
    assert len(sealed) == len(b"packet") + crypto.TAG_LEN
    assert crypto.aead_decrypt(key, 7, sealed, b"header") == b"packet"
    assert crypto.aead_decrypt(key, 0, crypto.aead_encrypt(key, 0, b"", b""), b"") == b""
    flipped = bytearray(sealed)
    flipped[0] ^= 1
    for bad in (
        lambda: crypto.aead_decrypt(key, 7, bytes(flipped), b"header"),
        lambda: crypto.aead_decrypt(key, 8, sealed, b"header"),
        lambda: crypto.aead_decrypt(key, 7, sealed, b"headex"),
        lambda: crypto.aead_decrypt(bytes(32), 7, sealed, b"header"),
        lambda: crypto.aead_decrypt(key, 7, sealed[:-1], b"header"),
    ):
        with pytest.raises(crypto.CryptoError):
            bad()


# --- BLAKE2s, HMAC, KDF -------------------------------------------------------------------

def test_blake2s_rfc7693_appendix_b() -> None:
    assert crypto.HASH(b"abc") == h(
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
    )


def test_blake2s_keyed_reference_kat() -> None:
    """blake2s-kat.txt: key 00..1f, inputs "" and 00, 32-byte output. Our MAC is the same
    keyed BLAKE2s with a 16-byte digest, which is a parameter of the hash, not a truncation."""
    key = bytes(range(32))
    kat = {
        b"": h("48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49"),
        b"\x00": h("40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1"),
    }
    for message, expected in kat.items():
        assert hashlib.blake2s(message, key=key).digest() == expected
        mac = crypto.MAC(key, message)
        assert len(mac) == 16
        assert mac == hashlib.blake2s(message, key=key, digest_size=16).digest()
        assert mac != expected[:16]


def _hmac_blake2s_by_hand(key: bytes, data: bytes) -> bytes:
    """RFC 2104 with BLAKE2s (64-byte block), as the whitepaper's HMAC."""
    block = 64
    if len(key) > block:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.blake2s(bytes(b ^ 0x36 for b in key) + data).digest()
    return hashlib.blake2s(bytes(b ^ 0x5C for b in key) + inner).digest()


@pytest.mark.parametrize("key_len", [0, 16, 32, 64, 65])
def test_hmac_blake2s_matches_rfc2104(key_len: int) -> None:
    key = bytes(range(key_len))
    for data in (b"", b"\x01", bytes(range(200))):
        assert crypto.HMAC(key, data) == _hmac_blake2s_by_hand(key, data)


def test_kdf_chain_per_whitepaper() -> None:
    """tau0 = HMAC(key, input); tau1 = HMAC(tau0, 0x1); tau_i = HMAC(tau0, tau_{i-1} || i)."""
    key, data = bytes(range(32)), b"input keying material"
    tau0 = _hmac_blake2s_by_hand(key, data)
    tau1 = _hmac_blake2s_by_hand(tau0, b"\x01")
    tau2 = _hmac_blake2s_by_hand(tau0, tau1 + b"\x02")
    tau3 = _hmac_blake2s_by_hand(tau0, tau2 + b"\x03")
    assert crypto.KDF1(key, data) == tau1
    assert crypto.KDF2(key, data) == (tau1, tau2)
    assert crypto.KDF3(key, data) == (tau1, tau2, tau3)


# --- HChaCha20 and XChaCha20-Poly1305, draft-irtf-cfrg-xchacha-03 ---------------------------

def test_hchacha20_draft_section_2_2_1() -> None:
    key = bytes(range(32))
    nonce = h("000000090000004a0000000031415927")
    assert crypto.hchacha20(key, nonce) == h(
        "82413b42 27b27bfe d30e4250 8a877d73 a0f9e4d5 8a74a853 c12ec413 26d3ecdc"
    )


def test_hchacha20_refuses_wrong_sizes() -> None:
    with pytest.raises(ValueError):
        crypto.hchacha20(bytes(31), bytes(16))
    with pytest.raises(ValueError):
        crypto.hchacha20(bytes(32), bytes(24))


XCHACHA_KEY = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
XCHACHA_NONCE = h("404142434445464748494a4b4c4d4e4f5051525354555657")
XCHACHA_CIPHERTEXT = h(
    """
    bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
    731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
    2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
    21f9664c97637da9768812f615c68b13b52e
    """
)
XCHACHA_TAG = h("c0875924c1c7987947deafd8780acf49")


def test_xchacha20poly1305_draft_a_3_1() -> None:
    sealed = crypto.xaead_encrypt(XCHACHA_KEY, XCHACHA_NONCE, LADIES, RFC8439_AAD)
    assert sealed == XCHACHA_CIPHERTEXT + XCHACHA_TAG
    assert crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, sealed, RFC8439_AAD) == LADIES


def test_xchacha20poly1305_tampering_and_sizes() -> None:
    sealed = XCHACHA_CIPHERTEXT + XCHACHA_TAG
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(crypto.CryptoError):
        crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, bytes(flipped), RFC8439_AAD)
    other_nonce = XCHACHA_NONCE[:-1] + b"\x00"
    with pytest.raises(crypto.CryptoError):
        crypto.xaead_decrypt(XCHACHA_KEY, other_nonce, sealed, RFC8439_AAD)
    with pytest.raises(crypto.CryptoError):
        crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, sealed, b"")
    with pytest.raises(ValueError):
        crypto.xaead_encrypt(XCHACHA_KEY, XCHACHA_NONCE[:16], LADIES, b"")


# --- WireGuard's initial handshake state ------------------------------------------------

# boringtun src/noise/handshake.rs: "initiator.chaining_key = HASH(CONSTRUCTION)" and
# "initiator.chaining_hash = HASH(initiator.chaining_key || IDENTIFIER)", as published there.
BORINGTUN_INITIAL_CHAIN_KEY = bytes([
    96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235, 66, 6, 248,
    114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54,
])
BORINGTUN_INITIAL_CHAIN_HASH = bytes([
    34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108, 102, 34,
    147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243,
])


def test_wireguard_initial_chaining_key_and_hash() -> None:
    assert CONSTRUCTION == b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
    assert IDENTIFIER == b"WireGuard v1 zx2c4 Jason@zx2c4.com"
    chaining_key = crypto.HASH(CONSTRUCTION)
    assert chaining_key == BORINGTUN_INITIAL_CHAIN_KEY
    assert chaining_key.hex() == "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36"
    assert crypto.HASH(chaining_key + IDENTIFIER) == BORINGTUN_INITIAL_CHAIN_HASH
