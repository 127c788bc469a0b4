"""bench_ingest's command line: a count, duration or switch interval out of bounds is a
clear error before any server starts; good values parse as given."""

from __future__ import annotations

import pytest

from bench import bench_ingest


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "0"],
        ["--events", "1e400"],
        ["--rounds", "0"],
        ["--queries", "-1"],
        ["--latency-seconds", "0"],
        ["--latency-seconds", "nan"],
        ["--latency-seconds", "inf"],
        ["--rss-events", "-1"],
        ["--switch-interval", "0"],
        ["--switch-interval", "-0.005"],
        ["--switch-interval", "2"],
        ["--switch-interval", "nan"],
        ["--switch-interval", "五"],
        ["--switch-interval", ""],
    ],
)
def test_a_bad_value_is_a_clear_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_ingest.arguments().parse_args(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "not a number" in error or "is not between" in error


def test_good_values_parse_as_given() -> None:
    parsed = bench_ingest.arguments().parse_args(
        ["--events", "300000", "--rounds", "2", "--switch-interval", "0.0002"]
    )
    assert (parsed.events, parsed.rounds, parsed.switch_interval) == (300_000, 2, 0.0002)
    defaults = bench_ingest.arguments().parse_args([])
    assert defaults.switch_interval is None and defaults.rss_events == 0
