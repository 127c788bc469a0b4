"""Accounting of the soak benchmark (bench/soak.py): when each published event became
visible to each observer, the figures of one sample, the first-vs-last summary, and a run
window by window.

Run: ``.venv/bin/python -m bench.soak_stats soak-1000.jsonl [--window 300]`` (the JSON
lines of ``bench.soak --out``).
"""

from __future__ import annotations

import bisect
import itertools
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.gateway_stack import percentile

#: The materializer's DEBUG line for each committed batch (materializer/consumer.py).
BATCH_LINE = re.compile(rb"pulse_bi\.materializer\.consumer: batch \d+-\d+: .* in ([0-9.]+) ms")
#: How many (version, time) pairs an observer keeps for acks that arrive after a notice.
HISTORY = 50_000


class Visibility:
    """When each stream sequence became visible to one observer.

    The observer is the change-notice subject or one subscriber of the live ``pipeline``
    query: both report a version (the last applied stream sequence). A publish ack can
    arrive after the notice that covers it, so the observer keeps a short history of
    (version, time) to place a late ack.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = 0
        self._versions: list[int] = []
        self._times: list[float] = []
        self._latencies: list[float] = []

    def saw(self, version: int, at: float, published: Mapping[int, float]) -> None:
        """The observer now shows everything up to ``version`` (at perf_counter ``at``)."""
        if version <= self.last:
            return
        for sequence in range(self.last + 1, version + 1):
            sent = published.get(sequence)
            if sent is not None:
                self._latencies.append(at - sent)
        self.last = version
        self._versions.append(version)
        self._times.append(at)
        if len(self._versions) > 2 * HISTORY:
            del self._versions[:HISTORY], self._times[:HISTORY]

    def acked(self, sequence: int, sent: float) -> None:
        """A publish ack for ``sequence``: count it now if the observer already showed it."""
        if sequence <= self.last:
            at = bisect.bisect_left(self._versions, sequence)
            if at < len(self._versions):
                self._latencies.append(self._times[at] - sent)

    def take(self) -> list[float]:
        """Latencies (s) measured since the last call."""
        taken, self._latencies = self._latencies, []
        return taken


def summarize(values: list[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """Count, p50, p99 and max of ``values`` times ``scale`` (ms by default)."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50) * scale, 2),
        "p99": round(percentile(values, 99) * scale, 2),
        "max": round(max(values) * scale, 2),
    }


def batch_times(log: bytes) -> list[float]:
    """Batch times (s) from new lines of the materializer's log."""
    return [float(match.group(1)) / 1000 for match in BATCH_LINE.finditer(log)]


def slope_per_minute(points: Iterable[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    pairs = list(points)
    if len(pairs) < 3:
        return None
    xs = [x for x, _ in pairs]
    ys = [y for _, y in pairs]
    return round(statistics.linear_regression(xs, ys).slope * 60, 3)


def cpu_per_event(samples: list[dict[str, Any]]) -> float | None:
    """Materializer CPU ms per event applied over consecutive samples.

    CPU time, unlike wall time, hardly grows when neighbours take the cores, so a rise
    here is the materializer's own cost growing.
    """
    points = [s for s in samples if s.get("applied_sequence") and "materializer_cpu_pct" in s]
    if len(points) < 2:
        return None
    cpu = sum(
        later["materializer_cpu_pct"] / 100 * (later["t"] - earlier["t"])
        for earlier, later in itertools.pairwise(points)
    )
    events = points[-1]["applied_sequence"] - points[0]["applied_sequence"]
    return round(cpu * 1000 / events, 3) if events > 0 else None


@dataclass
class Window:
    """The raw figures of one comparison window (the first or the last minutes)."""

    name: str
    start: float
    end: float
    values: dict[str, list[float]] = field(default_factory=dict)

    def holds(self, t: float) -> bool:
        """Whether a sample taken at ``t`` seconds belongs here."""
        return self.start <= t <= self.end

    def add(self, key: str, values: list[float]) -> None:
        """Keep raw values of one kind."""
        self.values.setdefault(key, []).extend(values)


#: Figures compared between the first and the last window, with their target ratio.
COMPARED: dict[str, float | None] = {
    "batch_seconds": 1.2,
    "notice_latency": 1.2,
    "subscriber_latency": None,
    "query_latency": None,
}


def compare(first: Window, last: Window) -> dict[str, Any]:
    """p50/p99 of each compared figure in both windows, the p99 ratio last/first, verdict."""
    report: dict[str, Any] = {}
    for key, target in COMPARED.items():
        a = summarize(first.values.get(key, []))
        b = summarize(last.values.get(key, []))
        ratio = None
        if a["p99"] and b["p99"] is not None:
            ratio = round(float(b["p99"]) / float(a["p99"]), 3)
        entry: dict[str, Any] = {"first_ms": a, "last_ms": b, "p99_ratio": ratio}
        if target is not None:
            entry["target_ratio"] = target
            entry["met"] = ratio is not None and ratio <= target
        report[key] = entry
    return report


def sample_trend(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """Memory and disk over the run: RSS slopes after the warm-up, temp folder bound."""
    steady = [s for s in samples if s["t"] >= warmup]

    def series(key: str) -> list[tuple[float, float]]:
        return [(s["t"], s[key]) for s in steady if s.get(key) is not None]

    def first_last(key: str) -> tuple[Any, Any]:
        values = [s[key] for s in samples if s.get(key) is not None]
        return (values[0], values[-1]) if values else (None, None)

    trend: dict[str, Any] = {}
    for name, start, end in (("first", 0, warmup), ("last", samples[-1]["t"] - warmup, 1e12)):
        loads = [s["loadavg_1m"] for s in samples if start <= s["t"] <= end and "loadavg_1m" in s]
        trend[f"loadavg_1m_{name}_window"] = round(statistics.fmean(loads), 2) if loads else None
        trend[f"materializer_cpu_ms_per_event_{name}_window"] = cpu_per_event(
            [s for s in samples if start <= s["t"] <= end]
        )
    for key in ("materializer_rss_mb", "gateway_rss_mb"):
        first, final = first_last(key)
        trend[key] = {
            "first": first,
            "last": final,
            "max": max((s[key] for s in samples if s.get(key) is not None), default=None),
            "slope_mb_per_min_after_warmup": slope_per_minute(series(key)),
        }
    for key in ("tmp_mb", "wal_mb", "file_mb"):
        first, final = first_last(key)
        values = [s[key] for s in samples if s.get(key) is not None]
        trend[key] = {"first": first, "last": final, "max": max(values, default=None)}
    return trend


#: What ``by_window`` reports of each window: (column, sample key).
_WINDOW_P50S = (
    ("batch p50 ms", "batch_ms"),
    ("notice p50 ms", "notice_ms"),
    ("query p50 ms", "query_ms"),
)
_WINDOW_CPU = (("materializer cpu %", "materializer_cpu_pct"), ("gateway cpu %", "gateway_cpu_pct"))
#: Running totals whose rise in a window ``by_window`` reports: (column, sample key).
_WINDOW_TOTALS = (("checkpoints", "checkpoints"), ("checkpoint s", "checkpoint_seconds_total"))


def by_window(samples: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """The run in windows of ``seconds`` (by each sample's ``t``, in any order): batches
    committed, the median of the samples' p50 batch, notice and query times, the
    processes' mean CPU, the checkpoints (count and seconds) that ended in it and the
    named queries' answer time (``_read_load``), from the first sample on (the materializer's
    totals include the prefill's). Shows when a run's latencies climbed, which the
    first-vs-last summary cannot."""
    samples = sorted(samples, key=lambda s: s["t"])
    totals = {
        key: next((s[key] for s in samples if s.get(key) is not None), 0)
        for _, key in _WINDOW_TOTALS
    }
    # The materializer's totals include the prefill's reads: the first sample with them
    # is where counting starts.
    reads: dict[str, Any] = {}
    windows: list[dict[str, Any]] = []
    for index, group in itertools.groupby(samples, key=lambda s: int(s["t"] // seconds)):
        rows = list(group)
        window: dict[str, Any] = {
            "from_s": index * seconds,
            "batches": sum((s.get("batch_ms") or {}).get("n", 0) for s in rows),
        }
        for column, key in _WINDOW_P50S:
            p50s = [s[key]["p50"] for s in rows if s.get(key) and s[key].get("p50") is not None]
            window[column] = round(statistics.median(p50s), 1) if p50s else None
        for column, key in _WINDOW_CPU:
            values = [s[key] for s in rows if s.get(key) is not None]
            window[column] = round(statistics.fmean(values)) if values else None
        for column, key in _WINDOW_TOTALS:
            values = [s[key] for s in rows if s.get(key) is not None]
            window[column] = round(values[-1] - totals[key], 2) if values else None
            totals[key] = values[-1] if values else totals[key]
        window |= _read_load(rows, reads)
        windows.append(window)
    return windows


def _read_load(rows: list[dict[str, Any]], before: dict[str, Any]) -> dict[str, Any]:
    """The materializer's named queries in one window: the seconds they took to answer
    (from the request to the reply, a wait for a free ``QUERY_WORKERS`` thread included)
    per second, and the query that took the most, from the running totals
    ``query_seconds_by_name`` of the window's last sample against those of the sample
    before it (``before``: ``t`` and ``totals``, updated). Above ``QUERY_WORKERS`` the
    reads queued."""
    timed = [s for s in rows if s.get("query_seconds_by_name")]
    if timed and "t" not in before:  # the run's first: counting starts at its first sample
        before |= {"t": timed[0]["t"], "totals": timed[0]["query_seconds_by_name"]}
    if not timed or timed[-1]["t"] <= before["t"]:
        return {"queries s/s": None, "slowest query": None}
    last, totals = timed[-1], before["totals"]
    seconds = last["t"] - before["t"]
    # A total below the last one is a materializer started again: it counts from zero.
    spent = {
        name: value if value < totals.get(name, 0.0) else value - totals.get(name, 0.0)
        for name, value in last["query_seconds_by_name"].items()
    }
    before |= {"t": last["t"], "totals": last["query_seconds_by_name"]}
    name = max(spent, key=spent.__getitem__)
    return {
        "queries s/s": round(sum(spent.values()) / seconds, 3),
        "slowest query": f"{name} {spent[name] / seconds:.3f}",
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.soak_stats <out.jsonl> [--window 300]``: a soak's run by window.
    A line that is not a sample (not JSON, no number ``t``) is refused by its number."""
    import argparse
    import json
    import math

    parser = argparse.ArgumentParser(
        description="A soak's JSON lines (bench/soak.py --out) by window: "
        "python -m bench.soak_stats soak-1000.jsonl [--window 300]"
    )
    parser.add_argument("jsonl", type=argparse.FileType())
    parser.add_argument("--window", type=float, default=300.0, help="seconds per window")
    args = parser.parse_args(argv)
    if not (args.window > 0 and math.isfinite(args.window)):
        parser.error("--window must be a number of seconds above 0")
    samples = []
    with args.jsonl:
        for number, line in enumerate(args.jsonl, start=1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except ValueError as error:
                parser.error(f"line {number} is not JSON: {error}")
            t = sample.get("t") if isinstance(sample, dict) else None
            if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
                parser.error(f"line {number} is not a soak sample: no number 't'")
            reads = sample.get("query_seconds_by_name")
            if reads is not None and not (
                isinstance(reads, dict)
                and all(
                    isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf
                    for v in reads.values()
                )
            ):
                parser.error(
                    f"line {number}: 'query_seconds_by_name' is not an object of seconds"
                    " (finite numbers from 0) by query"
                )
            samples.append(sample)
    for row in by_window(samples, args.window):
        print("  ".join(f"{key} {value}" for key, value in row.items()))


if __name__ == "__main__":
    main()
