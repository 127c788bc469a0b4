"""bench_write_steps: the writer's CPU split by step, each part measured where it lies,
and the code it times left as it found it."""

from __future__ import annotations

import pytest

from bench import bench_write_steps
from materializer import events
from materializer.aggregates import AGGREGATES, pipeline
from materializer.store import Store


def _timed_functions() -> list[object]:
    """What the bench wraps with its timers, as found now."""
    found = [Store._apply, Store._resolve_keys, events.decode, pipeline.record]
    return found + [module.apply for module in AGGREGATES]


def test_every_step_is_timed_and_the_remainders_are_what_lies_between(
    capsys: pytest.CaptureFixture[str],
) -> None:
    originals = _timed_functions()
    figures = bench_write_steps.main(
        bench_write_steps.arguments().parse_args(["--events", "600", "--batch", "200"])
    )
    assert figures.pop("total") > 0 and figures.pop("total without the timers") > 0
    for label in ("decode and validate", "sales", "seen ids and keys"):
        assert figures[label] > 0, label
    # The last two parts are differences: the steps must lie inside the transaction's
    # timer (the loop around them is left) and the transaction inside the total (the
    # COMMIT is left), or one of them comes out negative.
    assert figures["Accepted objects, grouping"] > 0
    assert figures["COMMIT, seen-id index, gaps"] > 0
    out = capsys.readouterr().out
    assert out.startswith("600 events, batches of 200")
    assert "COMMIT, seen-id index, gaps" in out and "total without the timers:" in out
    assert _timed_functions() == originals


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "0"],
        ["--events", "-5"],
        ["--events", ""],
        ["--events", "1e400"],
        ["--events", "10" * 40],
        ["--batch", "0"],
        ["--batch", "abc"],
        ["--batch", "三"],  # unicode, not a digit int() takes
        ["--batch", "20000000"],
    ],
)
def test_a_bad_count_is_a_clear_error_before_any_work(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_write_steps.arguments().parse_args(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "not a number" in error or "is not between" in error
