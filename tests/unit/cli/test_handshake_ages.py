"""The mask the kernel guest tests compare `wg show` and `wgpy show` with (a VM run failed
when wg said "1 second ago" and wgpy, a moment later, "2 seconds ago")."""

from handshake_ages import mask_handshake_ages

BOLD, CYAN, RESET = b"\x1b[1m", b"\x1b[36m", b"\x1b[0m"


def test_one_second_later_masks_the_same() -> None:
    one, ages_one = mask_handshake_ages(b"peer: x\n  latest handshake: 1 second ago\n")
    two, ages_two = mask_handshake_ages(b"peer: x\n  latest handshake: 2 seconds ago\n")
    assert one == two == b"peer: x\n  latest handshake: <age>\n"
    assert (ages_one, ages_two) == ([1], [2])


def test_a_minute_boundary_masks_the_same() -> None:
    before, ages_before = mask_handshake_ages(b"  latest handshake: 59 seconds ago")
    after, ages_after = mask_handshake_ages(b"  latest handshake: 1 minute ago")
    assert before == after
    assert (ages_before, ages_after) == ([59], [60])


def test_colored_lines_keep_their_label() -> None:
    line = (BOLD + b"  latest handshake" + RESET + b": 1 " + CYAN + b"hour" + RESET + b", 2 "
            + CYAN + b"minutes" + RESET + b", 3 " + CYAN + b"seconds" + RESET + b" ago")
    masked, ages = mask_handshake_ages(line)
    assert masked == BOLD + b"  latest handshake" + RESET + b": <age>"
    assert ages == [3723]


def test_now_then_one_second_ago_masks_the_same() -> None:
    now, ages_now = mask_handshake_ages(b"  latest handshake: Now")
    later, ages_later = mask_handshake_ages(b"  latest handshake: 1 second ago")
    assert now == later
    assert (ages_now, ages_later) == ([0], [1])


def test_other_lines_are_left_alone() -> None:
    text = (b"  latest handshake: System clock wound backward!\n"
            b"  transfer: 1.00 KiB received, 2 B sent")
    assert mask_handshake_ages(text) == (text, [])
