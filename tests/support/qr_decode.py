"""A small QR code decoder for the tests: reads a clean module matrix back to its text.

It reads what a scanner reads — format information (error level, mask), the data modules in
the standard's zigzag order with the mask removed, the codewords de-interleaved, byte-mode
segments — for undamaged symbols only (no error correction: a wrong module shows up as a
wrong text or a parse error). The one thing it takes from segno is the table of error
correction block sizes per version and level (spec data, ISO/IEC 18004 table 9).
"""

from __future__ import annotations

from segno import consts

Matrix = list[list[bool]]  # [row][column], True = dark

# format bits' error-level field (ISO/IEC 18004 table 12)
_LEVEL_BY_BITS = {1: "L", 0: "M", 3: "Q", 2: "H"}

_MASKS = [
    lambda r, c: (r + c) % 2 == 0,
    lambda r, c: r % 2 == 0,
    lambda r, c: c % 3 == 0,
    lambda r, c: (r + c) % 3 == 0,
    lambda r, c: (r // 2 + c // 3) % 2 == 0,
    lambda r, c: (r * c) % 2 + (r * c) % 3 == 0,
    lambda r, c: ((r * c) % 2 + (r * c) % 3) % 2 == 0,
    lambda r, c: ((r + c) % 2 + (r * c) % 3) % 2 == 0,
]


class QRDecodeError(ValueError):
    pass


def strip_border(matrix: Matrix, border: int) -> Matrix:
    return [row[border:len(row) - border] for row in matrix[border:len(matrix) - border]]


def _format(matrix: Matrix) -> tuple[str, int]:
    # first copy: column 8 rows 0-5, (7,8), (8,8), (8,7), then row 8 columns 5..0 (bits 0..14
    # from least significant), masked with 0x5412
    positions = [(i, 8) for i in range(6)] + [(7, 8), (8, 8), (8, 7)] + [
        (8, 14 - i) for i in range(9, 15)]
    bits = sum(int(matrix[r][c]) << i for i, (r, c) in enumerate(positions)) ^ 0x5412
    data = bits >> 10
    remainder = data
    for _ in range(10):
        remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537)
    if (data << 10 | remainder) != bits:
        raise QRDecodeError("format information fails its BCH check")
    return _LEVEL_BY_BITS[data >> 3], data & 7


def _alignment_positions(version: int, size: int) -> list[int]:
    if version == 1:
        return []
    count = version // 7 + 2
    step = (version * 8 + count * 3 + 5) // (count * 4 - 4) * 2
    return sorted([size - 7 - i * step for i in range(count - 1)] + [6])


def _function_modules(version: int, size: int) -> list[list[bool]]:
    function = [[False] * size for _ in range(size)]

    def mark(top: int, left: int, height: int, width: int) -> None:
        for r in range(top, top + height):
            for c in range(left, left + width):
                function[r][c] = True

    mark(0, 0, 9, 9)  # finder, separator, format (and the timing crossing)
    mark(0, size - 8, 9, 8)
    mark(size - 8, 0, 8, 9)  # includes the dark module
    mark(6, 0, 1, size)  # timing patterns
    mark(0, 6, size, 1)
    positions = _alignment_positions(version, size)
    last = len(positions) - 1
    for i, row in enumerate(positions):
        for j, column in enumerate(positions):
            if (i, j) in ((0, 0), (0, last), (last, 0)):
                continue  # under a finder pattern
            mark(row - 2, column - 2, 5, 5)
    if version >= 7:
        mark(0, size - 11, 6, 3)  # version information
        mark(size - 11, 0, 3, 6)
    return function


def _read_bits(matrix: Matrix, function: list[list[bool]], mask: int) -> list[int]:
    size = len(matrix)
    bits = []
    right = size - 1
    while right >= 1:
        if right == 6:
            right = 5  # the vertical timing column is skipped
        upward = ((right + 1) & 2) == 0
        for step in range(size):
            row = size - 1 - step if upward else step
            for column in (right, right - 1):
                if not function[row][column]:
                    bits.append(int(matrix[row][column] ^ _MASKS[mask](row, column)))
        right -= 2
    return bits


def _data_codewords(codewords: list[int], version: int, level: str) -> list[int]:
    groups = consts.ECC[version][consts.ERROR_MAPPING[level]]
    data_lengths = [group.num_data for group in groups for _ in range(group.num_blocks)]
    blocks: list[list[int]] = [[] for _ in data_lengths]
    index = 0
    for column in range(max(data_lengths)):
        for block, length in zip(blocks, data_lengths):
            if column < length:
                block.append(codewords[index])
                index += 1
    return [codeword for block in blocks for codeword in block]


def _segments(data: list[int], version: int) -> bytes:
    bits = "".join(f"{byte:08b}" for byte in data)
    position = 0

    def take(count: int) -> int:
        nonlocal position
        value = int(bits[position:position + count] or "0", 2)
        position += count
        return value

    out = bytearray()
    while position + 4 <= len(bits):
        mode = take(4)
        if mode == 0:  # terminator
            break
        if mode == 0b0111:  # ECI designator: one byte for assignments < 128
            take(8)
            continue
        if mode != 0b0100:
            raise QRDecodeError(f"segment mode {mode:04b} not supported by this test decoder")
        length = take(8 if version < 10 else 16)
        out += bytes(take(8) for _ in range(length))
    return bytes(out)


def decode(matrix: Matrix) -> str:
    """The text of a QR code given its module matrix without quiet zone."""
    size = len(matrix)
    if size < 21 or (size - 17) % 4 or any(len(row) != size for row in matrix):
        raise QRDecodeError(f"a {size}x{len(matrix[0]) if matrix else 0} matrix is no QR code")
    version = (size - 17) // 4
    level, mask = _format(matrix)
    bits = _read_bits(matrix, _function_modules(version, size), mask)
    codewords = [int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits) - 7, 8)]
    return _segments(_data_codewords(codewords, version, level), version).decode("utf-8")
