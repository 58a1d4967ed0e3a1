"""Key encoding shared by every layer: 32-byte keys as base64 (wg's format) and hex (UAPI's)."""

from __future__ import annotations

import base64
import binascii
import secrets

from wgpy.core import crypto

KEY_LEN = 32
B64_KEY_LEN = 44


class KeyError_(ValueError):
    """A key could not be decoded. The message never contains the key material."""


def key_from_base64(text: str) -> bytes:
    """Decode a wg-style base64 key (exactly 44 chars ending in '='), strictly."""
    text = text.strip()
    if len(text) != B64_KEY_LEN or text[-1] != "=":
        raise KeyError_("Key is not the correct length or format")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_("Key is not the correct length or format") from None
    if len(raw) != KEY_LEN:
        raise KeyError_("Key is not the correct length or format")
    return raw


def key_to_base64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def key_from_hex(text: str) -> bytes:
    if len(text) != 2 * KEY_LEN:
        raise KeyError_("Key is not the correct length or format")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise KeyError_("Key is not the correct length or format") from None


def key_to_hex(key: bytes) -> str:
    return key.hex()


def generate_private_key() -> bytes:
    """A clamped Curve25519 private key, as `wg genkey` prints."""
    return crypto.clamp(secrets.token_bytes(KEY_LEN))


def generate_preshared_key() -> bytes:
    return secrets.token_bytes(KEY_LEN)


# `wg pubkey`, for every layer above the core: the core's Curve25519 rule, written there once
public_key = crypto.public_key


def is_zero(key: bytes) -> bool:
    return not any(key)
