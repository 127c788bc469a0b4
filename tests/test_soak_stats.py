"""The soak benchmark's accounting (bench/soak_stats.py): latencies are exact whichever of
the publish ack and the notice comes first, and the first-vs-last verdict is right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak_stats import (
    Visibility,
    Window,
    batch_times,
    by_window,
    compare,
    main,
    slope_per_minute,
)


def test_latency_counts_once_whether_the_ack_or_the_notice_comes_first() -> None:
    seen = Visibility("notices")
    published = {1: 10.0, 2: 10.1}
    seen.saw(2, 10.5, published)  # sequences 1 and 2 acked before the notice
    seen.acked(3, 10.6)  # acked after the notice below? not yet seen: counted later
    published[3] = 10.6
    seen.saw(4, 11.0, published)  # 4 not acked yet
    seen.acked(4, 10.9)  # late ack: placed at the notice that covered it

    assert sorted(round(v, 3) for v in seen.take()) == [0.1, 0.4, 0.4, 0.5]
    assert seen.take() == []


def test_an_older_version_changes_nothing() -> None:
    seen = Visibility("subscriber")
    seen.saw(5, 1.0, {5: 0.5})
    seen.saw(3, 2.0, {3: 0.1})
    assert seen.take() == [0.5]
    assert seen.last == 5


def test_batch_times_come_from_the_consumers_debug_lines() -> None:
    log = (
        b"2026-11-30 15:17:49,563 DEBUG pulse_bi.materializer.consumer: batch 1-20: "
        b"20 applied, 0 rejected, 0 duplicate in 12.5 ms\n"
        b"2026-11-30 15:17:49,600 INFO pulse_bi.materializer: batch 1-2 in 99 ms\n"
    )
    assert batch_times(log) == [pytest.approx(0.0125)]


def test_compare_reports_the_p99_ratio_and_the_verdict() -> None:
    first, last = Window("first", 0, 300), Window("last", 1500, 1800)
    first.add("batch_seconds", [0.010] * 100)
    last.add("batch_seconds", [0.011] * 100)
    first.add("notice_latency", [0.050] * 100)
    last.add("notice_latency", [0.070] * 100)

    report = compare(first, last)

    assert report["batch_seconds"]["p99_ratio"] == pytest.approx(1.1)
    assert report["batch_seconds"]["met"] is True
    assert report["notice_latency"]["p99_ratio"] == pytest.approx(1.4)
    assert report["notice_latency"]["met"] is False
    assert report["query_latency"]["p99_ratio"] is None  # nothing measured


def test_slope_is_per_minute() -> None:
    assert slope_per_minute([(0, 100.0), (60, 101.0), (120, 102.0)]) == pytest.approx(1.0)
    assert slope_per_minute([(0, 1.0)]) is None


def test_by_window_shows_when_a_run_climbed() -> None:
    """Each window's medians come from its own samples, and a checkpoint counts in the
    window where the count rose, including one between two windows' samples."""

    def sample(t: float, batch_p50: float, checkpoints: int) -> dict[str, object]:
        return {
            "t": t,
            "batch_ms": {"n": 10, "p50": batch_p50, "p99": 2 * batch_p50},
            "notice_ms": {"n": 10, "p50": batch_p50 + 20, "p99": 99.0},
            "query_ms": {"n": 0, "p50": None, "p99": None},
            "materializer_cpu_pct": 100.0 + t,
            "checkpoints": checkpoints,
        }

    samples = [sample(5, 20, 0), sample(10, 24, 1), sample(15, 22, 1)]
    samples += [sample(20, 40, 3), sample(25, 44, 3), sample(35, 50, 4)]
    assert by_window(list(reversed(samples)), 20) == by_window(samples, 20)
    windows = by_window(samples, 20)
    assert [w["from_s"] for w in windows] == [0, 20]
    first, last = windows
    assert (first["batches"], first["batch p50 ms"], first["notice p50 ms"]) == (30, 22, 42)
    assert (last["batch p50 ms"], last["checkpoints"]) == (44, 3)
    assert first["checkpoints"] == 1
    assert first["query p50 ms"] is None and first["gateway cpu %"] is None
    assert first["materializer cpu %"] == 110
    assert first["queries s/s"] is None and first["slowest query"] is None


def test_by_window_shows_the_named_queries_answer_time_per_second_and_the_slowest() -> None:
    """From the materializer's running totals by query: what each window's last sample
    added to the last sample before it, over the seconds between the two; the first
    sample's totals (the prefill's reads among them) are where counting starts."""

    def sample(t: float, reads: dict[str, float]) -> dict[str, object]:
        return {"t": t, "batch_ms": {"n": 1, "p50": 1.0}, "query_seconds_by_name": reads}

    samples = [
        sample(5, {"pipeline": 100.0, "ar_aging": 50.0}),
        sample(15, {"pipeline": 101.0, "ar_aging": 54.0}),
        sample(25, {"pipeline": 111.0, "ar_aging": 56.0, "sites": 1.0}),
        sample(35, {"pipeline": 112.0, "ar_aging": 57.0, "sites": 1.0}),
        sample(45, {"pipeline": 112.0, "ar_aging": 57.0, "sites": 1.0}),
    ]
    first, second, idle = by_window(samples, 20)
    assert first["queries s/s"] == pytest.approx(5 / 10)
    assert first["slowest query"] == "ar_aging 0.400"
    assert second["queries s/s"] == pytest.approx((11 + 3 + 1) / 20)
    assert second["slowest query"] == "pipeline 0.550"
    assert idle["queries s/s"] == 0
    (alone,) = by_window(samples[:1], 20)
    assert alone["queries s/s"] is None and alone["slowest query"] is None
    # The materializer started again between two samples: its totals count from zero.
    restarted = [*samples[:2], sample(25, {"pipeline": 2.0, "ar_aging": 54.5})]
    _, after_restart = by_window(restarted, 20)
    assert after_restart["queries s/s"] == pytest.approx((2 + 0.5) / 10)
    assert after_restart["slowest query"] == "pipeline 0.200"


def _sample_line(t: object) -> str:
    return json.dumps({"t": t, "batch_ms": {"n": 3, "p50": 9.5}, "checkpoints": 2})


def _reads_line(reads: object) -> str:
    return json.dumps({"t": 5, "query_seconds_by_name": reads})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], "line 1 is not JSON"),
        ([_sample_line(5), "[1, 2]"], "line 2 is not a soak sample"),
        ([_sample_line("5")], "line 1 is not a soak sample"),
        ([_sample_line(True)], "line 1 is not a soak sample"),
        ([_sample_line(None)], "line 1 is not a soak sample"),
        ([_reads_line([1.0])], "line 1: 'query_seconds_by_name' is not an object"),
        ([_sample_line(5), _reads_line({"pipeline": "1"})], "line 2: 'query_seconds_by_name'"),
        ([_reads_line({"pipeline": -1})], "line 1: 'query_seconds_by_name'"),
        ([_reads_line({"pipeline": True})], "line 1: 'query_seconds_by_name'"),
        ([_reads_line({"pipeline": 1e309})], "line 1: 'query_seconds_by_name'"),
        (['{"t": NaN}'], "line 1 is not a soak sample"),
        (["{}"], "line 1 is not a soak sample"),
    ],
)
def test_the_window_command_refuses_a_line_that_is_not_a_sample_by_its_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], message: str
) -> None:
    path = tmp_path / "soak.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as stopped:
        main([str(path)])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("window", ["0", "-300", "nan", "inf", "five"])
def test_the_window_command_refuses_a_window_that_is_not_seconds(
    tmp_path: Path, window: str
) -> None:
    path = tmp_path / "soak.jsonl"
    path.write_text(_sample_line(5) + "\n")
    with pytest.raises(SystemExit) as stopped:
        main([str(path), "--window", window])
    assert stopped.value.code == 2


def test_the_window_command_reads_empty_and_extreme_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty file prints nothing; years of seconds and a sample without figures
    still print their windows."""
    path = tmp_path / "soak.jsonl"
    path.write_text("\n\n")
    main([str(path)])
    assert capsys.readouterr().out == ""
    path.write_text("\n".join([_sample_line(0), _sample_line(1e12), '{"t": 2e12}']) + "\n")
    main([str(path), "--window", "1e-3"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert out[0].startswith("from_s 0.0  batches 3  batch p50 ms 9.5")
    assert "batches 0  batch p50 ms None" in out[2]
