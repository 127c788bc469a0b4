"""bench_gil: each step runs alone and beside a busy thread, and the thread is gone after."""

from __future__ import annotations

import sys
import threading

import pytest

from bench import bench_gil


def test_each_step_is_measured_alone_and_beside_the_busy_thread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = threading.active_count()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # each wait for the GIL 0.5 ms, not 5: a shorter test
    try:
        waits = bench_gil.main(
            bench_gil.arguments().parse_args(["--events", "400", "--batch", "200", "--repeat", "1"])
        )
    finally:
        sys.setswitchinterval(interval)
    assert list(waits) == [
        "SELECT 1",
        "INSERT of 200 rows, 2 numeric columns",
        "INSERT of 200 rows, 1 string column",
        "INSERT of 200 rows, 1 string column built as Arrow",
        "INSERT of 200 rows, 1 string column as one list parameter",
        "Store.apply_batch, 400 events in batches of 200",
    ]
    assert all(count >= 0 for count in waits.values())
    out = capsys.readouterr().out
    assert out.startswith("switch interval 0.5 ms")
    assert out.count("beside the busy thread") == 6 and out.count("hand-backs waited") == 6
    assert threading.active_count() == before  # the busy thread stopped


def test_the_busy_thread_counts_only_while_it_runs() -> None:
    with bench_gil.Probe() as probe:
        while probe.turns < 1000:
            pass
    turns = probe.turns
    assert turns >= 1000
    assert probe.turns == turns  # stopped: it counts no more


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "0"],
        ["--events", "1e400"],
        ["--batch", "0"],
        ["--batch", "三"],
        ["--repeat", "0"],
        ["--repeat", "-1"],
        ["--repeat", "10000"],
    ],
)
def test_a_bad_count_is_a_clear_error_before_any_work(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_gil.arguments().parse_args(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "not a number" in error or "is not between" in error
