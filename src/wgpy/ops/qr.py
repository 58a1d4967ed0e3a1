"""QR codes of client configs (segno): for the terminal as UTF-8 half blocks, or as PNG.

The terminal rendering draws the *light* modules with blocks and leaves dark modules as
spaces, like `qrencode -t utf8`: on the usual light-on-dark terminal the code then shows dark
on light, as scanners expect. `invert=True` is for dark-on-light terminals. Two module rows
share one text row (upper half block, lower half block, full block, space).
"""

from __future__ import annotations

import os
from pathlib import Path

import segno

QUIET_ZONE = 2  # modules of light border; scanners want some, 4 is the spec's
PNG_SCALE = 8

_HALF_BLOCKS = {  # (top light, bottom light) -> character
    (True, True): "\u2588",
    (True, False): "\u2580",
    (False, True): "\u2584",
    (False, False): " ",
}


def make_qr(text: str) -> segno.QRCode:
    """A (non-micro) QR code of text, error correction L or better if it fits the same size."""
    return segno.make(text, error="L", micro=False)


def module_rows(code: segno.QRCode, border: int = QUIET_ZONE) -> list[list[bool]]:
    """The matrix with its quiet zone, True = dark module."""
    return [[bool(module) for module in row] for row in code.matrix_iter(border=border)]


def render_terminal(text: str, invert: bool = False, border: int = QUIET_ZONE) -> str:
    rows = module_rows(make_qr(text), border)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))  # a light row below: part of the quiet zone
    out = []
    for top, bottom in zip(rows[0::2], rows[1::2]):
        chars = []
        for top_dark, bottom_dark in zip(top, bottom):
            key = (top_dark, bottom_dark) if invert else (not top_dark, not bottom_dark)
            chars.append(_HALF_BLOCKS[key])
        out.append("".join(chars))
    return "".join(line + "\n" for line in out)


def parse_terminal(rendering: str, invert: bool = False) -> list[list[bool]]:
    """The module matrix (True = dark) back from render_terminal's text."""
    lookup = {char: pair for pair, char in _HALF_BLOCKS.items()}
    rows: list[list[bool]] = []
    for line in rendering.splitlines():
        top, bottom = [], []
        for char in line:
            first, second = lookup[char]
            top.append(first if invert else not first)
            bottom.append(second if invert else not second)
        rows += [top, bottom]
    return rows


def write_png(text: str, path: Path, scale: int = PNG_SCALE) -> None:
    """The QR code as a PNG, created 0600 (a client config holds a private key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        make_qr(text).save(handle, kind="png", scale=scale, border=4)
