"""QR codes of client configs (segno): for the terminal as UTF-8 half blocks, or as PNG.

The terminal rendering draws the *light* modules with blocks and leaves dark modules as
spaces, like `qrencode -t utf8`: on the usual light-on-dark terminal the code then shows dark
on light, as scanners expect. `invert=True` is for dark-on-light terminals. Two module rows
share one text row (upper half block, lower half block, full block, space).
"""

from __future__ import annotations

import io
from pathlib import Path

import segno

from wgpy.conf.writer import write_private_file

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


def png_bytes(text: str, scale: int = PNG_SCALE) -> bytes:
    buffer = io.BytesIO()
    make_qr(text).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def write_png(text: str, path: Path, scale: int = PNG_SCALE) -> None:
    """The QR code as a PNG (a client config holds a private key): a new 0600 file renamed
    into place, so a symlink or someone else's file at path is replaced, never written through."""
    write_private_file(path, png_bytes(text, scale))
