"""The tests' guard against an hour turning while they run (``tests.clock``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.clock import wait_for_the_hour


@pytest.mark.parametrize(
    ("now", "wait"),
    [
        (datetime(2026, 12, 6, 6, 0, 0, tzinfo=UTC), 0.0),
        (datetime(2026, 12, 6, 6, 58, 29, tzinfo=UTC), 0.0),
        (datetime(2026, 12, 6, 6, 58, 31, tzinfo=UTC), 90.0),
        (datetime(2026, 12, 6, 6, 59, 59, 500_000, tzinfo=UTC), 1.5),
        (datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC), 61.0),  # and a new day
    ],
)
def test_a_test_waits_out_the_last_90_s_of_an_hour(now: datetime, wait: float) -> None:
    # Into the next hour (and one second more) from 90 s before its turn; never else.
    assert wait_for_the_hour(now) == pytest.approx(wait)
