"""Hypothesis settings for the whole suite (CI runs `python3 -m pytest -q`, which loads this).

Every run loads the "wgpy" profile:

- examples are random on every run (derandomize off, even though Hypothesis would pick its
  derandomized built-in "ci" profile when the CI variable is set, as .ci/run sets it): each CI
  run explores new inputs, so a property that can fail must fail for a seed, not for none;
- `print_blob=True`: a failure prints the `@reproduce_failure(...)` decorator that replays it
  exactly, and the seed; paste it above the test locally;
- no deadline and no "too slow" health check: the suite shares a loaded machine and no test
  asserts on timing.

Running the property tests hard: `--hypothesis-seed=N` picks the run's randomness, and
`WGPY_HYPOTHESIS_EXAMPLES=N` sets every `@given` test's number of examples (it replaces the
test's own `max_examples`), e.g.
`WGPY_HYPOTHESIS_EXAMPLES=5000 python3 -m pytest -q tests/unit/core/test_batches.py --hypothesis-seed=7`.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.internal.detection import is_hypothesis_test

settings.register_profile(
    "wgpy",
    parent=settings.get_profile("default"),  # not "ci": that one is derandomized
    derandomize=False,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("wgpy")

EXAMPLES_VARIABLE = "WGPY_HYPOTHESIS_EXAMPLES"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `e2e` needs root wherever it lives (a few in tests/unit use a real TUN, a
    network namespace or chown): without root it fails saying so, never skips; `-m 'not e2e
    and not kernel'` is the run without root."""
    if item.get_closest_marker("e2e") is not None and os.geteuid() != 0:
        pytest.fail("needs root (marked e2e); deselect with -m 'not e2e and not kernel'",
                    pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    value = os.environ.get(EXAMPLES_VARIABLE)
    if not value:
        return
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"{EXAMPLES_VARIABLE}={value!r}: expected a positive integer")
    for item in items:
        test = getattr(item, "obj", None)
        if test is None or not is_hypothesis_test(test):
            continue
        # Hypothesis reads a @given test's settings from this attribute when the test runs;
        # if a release renames it, say so instead of running the test's usual few examples.
        current = test.__dict__.get("_hypothesis_internal_use_settings")
        if current is None:
            raise pytest.UsageError(
                f"{EXAMPLES_VARIABLE}: cannot set the examples of {item.nodeid} with this "
                "Hypothesis release"
            )
        test._hypothesis_internal_use_settings = settings(current, max_examples=int(value))
