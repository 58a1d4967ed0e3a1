"""ReplayWindow: the kernel's counter selftest as a table, then hypothesis against a naive set."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy.constants import REJECT_AFTER_MESSAGES, REPLAY_WINDOW_SIZE
from wgpy.core.replay import ReplayWindow

W = REPLAY_WINDOW_SIZE  # COUNTER_WINDOW_SIZE in the kernel
T_LIM = W + 1
R = REJECT_AFTER_MESSAGES

# The sequence of drivers/net/wireguard/selftest/counter.c (wg_packet_counter_selftest), case
# numbers as there; wireguard-go's replay_test.go TestReplay runs the same sequence. Each row
# is fed to one window in order: (counter, accepted?).
KERNEL_SELFTEST_ROWS = [
    (0, True),  # 1
    (1, True),  # 2
    (1, False),  # 3
    (9, True),  # 4
    (8, True),  # 5
    (7, True),  # 6
    (7, False),  # 7
    (T_LIM, True),  # 8
    (T_LIM - 1, True),  # 9
    (T_LIM - 1, False),  # 10
    (T_LIM - 2, True),  # 11
    (2, True),  # 12
    (2, False),  # 13
    (T_LIM + 16, True),  # 14
    (3, False),  # 15
    (T_LIM + 16, False),  # 16
    (T_LIM * 4, True),  # 17
    (T_LIM * 4 - (T_LIM - 1), True),  # 18
    (10, False),  # 19
    (T_LIM * 4 - T_LIM, False),  # 20
    (T_LIM * 4 - (T_LIM + 1), False),  # 21
    (T_LIM * 4 - (T_LIM - 2), True),  # 22
    (T_LIM * 4 + 1 - T_LIM, False),  # 23
    (0, False),  # 24
    (R, False),  # 25
    (R - 1, True),  # 26
    (R, False),  # 27
    (R - 1, False),  # 28
    (R - 2, True),  # 29
    (R + 1, False),  # 30
    (R + 2, False),  # 31
    (R - 2, False),  # 32
    (R - 3, True),  # 33
    (0, False),  # 34
]


def test_kernel_selftest_sequence() -> None:
    window = ReplayWindow()
    for number, (counter, expected) in enumerate(KERNEL_SELFTEST_ROWS, start=1):
        assert window.check(counter) is expected, f"case {number}: check({counter})"
        assert window.update(counter) is expected, f"case {number}: update({counter})"


def _down(top: int, bottom: int) -> list[tuple[int, bool]]:
    return [(i, True) for i in range(top, bottom - 1, -1)]


# The six bulk runs that follow in the same selftest, each on a fresh window.
def _bulk_runs() -> list[tuple[str, list[tuple[int, bool]]]]:
    return [
        ("ascending 1..W then 0", [(i, True) for i in range(1, W + 1)] + [(0, True), (0, False)]),
        ("ascending 2..W+1 then 1", [(i, True) for i in range(2, W + 2)] + [(1, True), (0, False)]),
        ("descending W..0", [(i, True) for i in range(W, -1, -1)]),
        ("descending W+1..1 then 0", [(i, True) for i in range(W + 1, 0, -1)] + [(0, False)]),
        ("descending W..1, W+1, 0", _down(W, 1) + [(W + 1, True), (0, False)]),
        ("descending W..1, 0, W+1", _down(W, 1) + [(0, True), (W + 1, True)]),
    ]


@pytest.mark.parametrize(("name", "rows"), _bulk_runs(), ids=[n for n, _ in _bulk_runs()])
def test_kernel_selftest_bulk_runs(name: str, rows: list[tuple[int, bool]]) -> None:
    window = ReplayWindow()
    for counter, expected in rows:
        assert window.update(counter) is expected, f"{name}: {counter}"


def test_check_changes_nothing_and_reset_forgets() -> None:
    window = ReplayWindow()
    assert window.check(5) and window.check(5)
    assert window.update(5)
    assert not window.check(5)
    window.reset()
    assert window.check(5) and window.update(5)


class NaiveWindow:
    """The same semantics spelled out with a set: what the ring must be equivalent to."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.last = 0

    def accepts(self, counter: int) -> bool:
        if counter >= R:
            return False
        if counter > self.last:
            return True
        return self.last - counter <= W and counter not in self.seen

    def update(self, counter: int) -> bool:
        if not self.accepts(counter):
            return False
        self.seen.add(counter)
        self.last = max(self.last, counter)
        return True


# Steps relative to the highest counter so far: mostly near it (reordering, replays, edge of
# the window, word boundaries), sometimes far ahead, sometimes absolute (near 0 or the limit).
_steps = st.one_of(
    st.tuples(st.just("rel"), st.integers(-W - 70, 70)),
    st.tuples(st.just("rel"), st.sampled_from([-W - 1, -W, -W + 1, 63, 64, 65, 127, 128, 129])),
    st.tuples(st.just("rel"), st.integers(1, 3 * 8192)),
    st.tuples(st.just("abs"), st.integers(0, 200)),
    st.tuples(st.just("abs"), st.integers(R - 200, R + 5)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_steps, max_size=200))
def test_matches_a_naive_set_model(steps: list[tuple[str, int]]) -> None:
    window, model = ReplayWindow(), NaiveWindow()
    for kind, value in steps:
        counter = max(0, model.last + value) if kind == "rel" else value
        expected = model.accepts(counter)
        assert window.check(counter) is expected
        assert window.update(counter) is expected
        model.update(counter)
    # everything still inside the window answers like the model
    for counter in range(max(0, model.last - W - 2), model.last + 3):
        assert window.check(counter) is model.accepts(counter)


def test_snapshot_is_the_whole_state() -> None:
    window = ReplayWindow()
    fresh = window.snapshot()
    assert window.check(5) and window.snapshot() == fresh  # check changes nothing
    assert window.update(5) and window.snapshot() != fresh
    moved = window.snapshot()
    assert window.update(3) and window.snapshot() != moved  # a bit inside the window too
    assert not window.update(3) and not window.update(10**20)
    twin = ReplayWindow()
    twin.update(5)
    twin.update(3)
    assert twin.snapshot() == window.snapshot()
