"""Secrets never leak through repr/str of the core's objects or through error messages.

After a handshake with a preshared key, every object reachable from both devices (peers,
keypairs, handshake state, cookie state, timers, the tables) is rendered with repr() and str();
none may contain a private key, a preshared key, a session key or the handshake's ephemeral
private key -- raw bytes, hex or base64. Errors raised by our own code on bad keys must not
echo the key either.
"""

from __future__ import annotations

import base64
import enum
import gc
import subprocess
import sys
from pathlib import Path

import pytest
from pairlib import Pair

from wgpy.control.uapi import UapiError, parse_set
from wgpy.errors import WgError
from wgpy.keys import generate_preshared_key, generate_private_key, key_from_base64

PSK = bytes(range(1, 33))


def forms(secret: bytes) -> list[str]:
    """The spellings a leak could take: repr of the bytes, hex, base64 (and 12-char slices of
    hex/base64, enough to identify a key in a truncated message)."""
    hex_text = secret.hex()
    b64_text = base64.b64encode(secret).decode()
    return [repr(secret)[2:-1], hex_text, b64_text, hex_text[8:20], b64_text[8:20]]


def reachable(roots: list[object], limit: int = 20000) -> list[object]:
    """Every object reachable from roots through attributes and containers (not bytes)."""
    seen: dict[int, object] = {}
    stack = list(roots)
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (bytes, bytearray, str, int, float, bool,
                                                type(None), enum.Enum, type)):
            continue
        seen[id(obj)] = obj
        for ref in gc.get_referents(obj):
            if callable(ref) and not hasattr(ref, "__dict__"):
                continue  # builtin functions, methods of C types
            stack.append(ref)
    return list(seen.values())


def secret_bytes_in(objects: list[object]) -> set[bytes]:
    """32-byte values held anywhere in these objects (candidate secrets)."""
    found: set[bytes] = set()
    for obj in objects:
        for ref in gc.get_referents(obj):
            if isinstance(ref, (bytes, bytearray)) and len(ref) == 32:
                found.add(bytes(ref))
    return found


def test_no_secret_in_repr_or_str_of_anything_reachable() -> None:
    pair = Pair(psk=PSK, b_knows_a_endpoint=True)
    pair.a_sends(b"hello")
    pair.tick(1)
    assert pair.b.received, "the handshake did not complete"
    secrets = [pair.a.private_key, pair.b.private_key, PSK]
    objects = reachable([pair.a.device, pair.b.device])
    # the session keys and ephemerals are secrets too: take every 32-byte value held by a
    # keypair or handshake object, minus the public keys
    publics = {pair.a.public_key, pair.b.public_key}
    held = secret_bytes_in([o for o in objects
                            if type(o).__module__.startswith("wgpy.core")]) - publics
    for obj in objects:
        if not type(obj).__module__.startswith("wgpy"):
            continue
        for text in (repr(obj), str(obj)):
            for secret in [*secrets, *held]:
                for form in forms(secret):
                    assert form not in text, (
                        f"{type(obj).__qualname__} shows secret material: {text[:200]}")


@pytest.mark.parametrize("bad", ["truncated", "extended", "not_hex"])
def test_uapi_key_errors_do_not_echo_the_key(bad: str) -> None:
    key = generate_private_key().hex()
    value = {"truncated": key[:-1], "extended": key + "0", "not_hex": key[:-2] + "zz"}[bad]
    for body in (f"private_key={value}\n",
                 f"public_key={generate_private_key().hex()}\npreshared_key={value}\n"):
        with pytest.raises(UapiError) as caught:
            parse_set(body)
        assert key[:12] not in str(caught.value) and key[-12:-2] not in repr(caught.value)


def test_wrong_length_key_error_names_no_key() -> None:
    from wgpy.core.device import Device

    device = Device(rng=lambda n: bytes(n))
    secret = generate_private_key()
    with pytest.raises((WgError, ValueError)) as caught:
        device.set_private_key(secret[:31])
    for form in forms(secret[:31]):
        assert form not in str(caught.value)


@pytest.mark.parametrize("command", ["genkey", "genpsk"])
def test_key_files_are_written_0600_whatever_the_umask(tmp_path: Path, command: str) -> None:
    target = tmp_path / f"{command}.key"
    with open(target, "wb") as handle:
        target.chmod(0o644)  # as if made by a shell with umask 022
        subprocess.run([sys.executable, "-m", "wgpy.cli.wg", command], stdout=handle,
                       check=True)
    assert target.stat().st_mode & 0o777 == 0o600
    assert len(key_from_base64(target.read_text().strip())) == 32


def test_preshared_key_generator_is_not_a_constant() -> None:
    assert generate_preshared_key() != generate_preshared_key()
