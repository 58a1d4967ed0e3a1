"""QR codes of client configs: what `--qr` prints and `--qr-png` writes, read back.

The modules read back from the terminal text and from the PNG are decoded to text with the
small decoder in qr_decode.py (no QR decoder library is a project dependency) and compared with
the client config; they are also compared with the matrix segno encodes for that text. The
decoder itself is checked on every mask and error level, one- and multi-block versions.
"""

from __future__ import annotations

import stat
import struct
import zlib
from pathlib import Path

import pytest
import segno
from qr_decode import QRDecodeError, decode, strip_border

from wgpy.cli import ops as commands
from wgpy.ops import qr

CLIENT = (
    "[Interface]\n"
    "PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n"
    "Address = 10.8.0.3/32, fd08::3/128\n"
    "DNS = 10.8.0.1\n"
    "\n"
    "[Peer]\n"
    "PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n"
    "PresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=\n"
    "AllowedIPs = 0.0.0.0/0, ::/0\n"
    "Endpoint = vpn.example.com:51820\n"
    "PersistentKeepalive = 25\n"
)


def expected_matrix(text: str, border: int) -> list[list[bool]]:
    code = segno.make(text, error="L", micro=False)
    return [[bool(m) for m in row] for row in code.matrix_iter(border=border)]


def read_png_pixels(path: Path) -> list[list[bool]]:
    """A minimal PNG reader for 1/8-bit greyscale or palette images: True = dark pixel."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, palette = 8, b"", None
    width = height = depth = color = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
        elif kind == b"PLTE":
            palette = [body[i:i + 3] for i in range(0, len(body), 3)]
        elif kind == b"IDAT":
            idat += body
    assert color in (0, 3) and depth in (1, 8), (color, depth)
    raw = zlib.decompress(idat)
    stride = (width * depth + 7) // 8
    rows, previous = [], bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - 1] if i else 0
            up = previous[i]
            up_left = previous[i - 1] if i else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + predictor) & 0xFF
        previous = line
        values = ([(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)] if depth == 1
                  else list(line[:width]))
        if palette is not None:
            rows.append([sum(palette[v]) < 3 * 128 for v in values])
        else:
            rows.append([v < (1 if depth == 1 else 128) for v in values])
    return rows


def png_modules(path: Path, scale: int) -> list[list[bool]]:
    pixels = read_png_pixels(path)
    assert len(pixels) % scale == 0 and len(pixels[0]) % scale == 0
    return [[row[x + scale // 2] for x in range(0, len(row), scale)]
            for row in pixels[scale // 2::scale]]


def test_decoder_reads_every_mask_level_and_size() -> None:
    for text in ("wgpy", CLIENT * 2):  # version 1; a multi-block version with 16-bit counts
        for level in "LMQH":
            for mask in range(8):
                code = segno.make(text, error=level, mask=mask, micro=False, boost_error=False)
                matrix = [[bool(m) for m in row] for row in code.matrix_iter(border=0)]
                assert decode(matrix) == text, (level, mask, code.version)
                matrix[-1][-1] ^= True  # the first data module: the mode indicator's bit
                with pytest.raises(QRDecodeError, match="segment mode 1100"):
                    decode(matrix)


def test_terminal_rendering_decodes_to_the_config() -> None:
    rendering = qr.render_terminal(CLIENT)
    modules = qr.parse_terminal(rendering)
    size = len(modules[0]) - 2 * qr.QUIET_ZONE
    assert decode(strip_border(modules, qr.QUIET_ZONE)[:size]) == CLIENT
    expected = expected_matrix(CLIENT, qr.QUIET_ZONE)
    if len(expected) % 2:
        expected.append([False] * len(expected[0]))
    assert modules == expected
    assert set(rendering) <= {"\u2588", "\u2580", "\u2584", " ", "\n"}
    # light modules are drawn: the quiet zone is a full row of full blocks
    assert rendering.splitlines()[0] == "\u2588" * len(expected[0])
    # a different text gives a different picture
    assert qr.render_terminal(CLIENT.replace("25\n", "26\n")) != rendering


def test_inverted_rendering_swaps_blocks() -> None:
    normal, inverted = qr.render_terminal(CLIENT), qr.render_terminal(CLIENT, invert=True)
    assert qr.parse_terminal(inverted, invert=True) == qr.parse_terminal(normal)
    assert inverted.splitlines()[0] == " " * len(normal.splitlines()[0])


def test_png_decodes_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "phone.png"
    qr.write_png(CLIENT, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert png_modules(path, qr.PNG_SCALE) == expected_matrix(CLIENT, 4)
    assert decode(strip_border(png_modules(path, qr.PNG_SCALE), 4)) == CLIENT


def test_qr_command_renders_any_config(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "client.conf"
    config.write_text(CLIENT)
    assert commands.main(["qr", str(config)]) == 0
    expected = expected_matrix(CLIENT, 2)
    assert qr.parse_terminal(capsys.readouterr().out)[: len(expected)] == expected
    png = tmp_path / "out.png"
    assert commands.main(["qr", str(config), "--png", str(png)]) == 0
    assert png_modules(png, qr.PNG_SCALE) == expected_matrix(CLIENT, 4)
    assert commands.main(["qr", str(tmp_path / "missing.conf")]) == 1
    assert "No such file" in capsys.readouterr().err
