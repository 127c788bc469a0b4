"""bench_statements: its statements table for the simulated mix and for orders alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.bench_statements", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_orders_alone_time_the_order_statements_and_nothing_of_the_other_events() -> None:
    done = _run("--prefill", "400", "--events", "120", "--batch", "40", "--stream", "orders")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 batches of 40 after 400 events")
    statements = "\n".join(lines[2:])
    # A batch's raw rows, its deltas and the pipeline state's row: two appends.
    for table in ("order_events", "order_lines", "raw_staged", "aggregate_deltas"):
        assert table in statements
    for table in ("stock_events", "invoice_events", "payment_events", "site_events"):
        assert table not in statements


def test_the_mix_times_every_kind_of_event() -> None:
    done = _run("--prefill", "400", "--events", "400", "--batch", "40")
    assert done.returncode == 0, done.stderr
    assert "stock_events" in done.stdout and "invoice_events" in done.stdout


def test_the_reads_are_timed_with_the_deltas_waiting_and_folded() -> None:
    done = _run(
        "--prefill", "400", "--events", "30", "--batch", "1", "--stream", "orders",
        "--reads", "3", "--top", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "named queries" in line]
    # Each one-order batch left a row of sales, of product sales and of the pipeline
    # state waiting (the prefill's rows were folded into the bases as it went, or not).
    waiting = int(line.split("with the ")[1].split(" delta rows")[0].replace(",", ""))
    assert waiting >= 3 * 30
    waited, folded = line.split("; folded ")
    for part in (waited, folded):
        for name in ("pipeline", "sites", "sales_summary", "top_products"):
            assert f"{name} " in part
        assert part.count(" ms") == 4


@pytest.mark.parametrize("stream", ["", "ORDERS", "order", "orders,mix"])
def test_an_unknown_stream_is_refused(stream: str) -> None:
    done = _run("--prefill", "0", "--events", "1", "--stream", stream)
    assert done.returncode == 2
    assert "--stream: invalid choice" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "--batch: 0 is not between 1 and 1e+06"),
        (["--batch", "-40"], "--batch: -40 is not between 1 and 1e+06"),
        (["--events", "0"], "--events: 0 is not between 1 and 1e+08"),
        (["--prefill", "-1"], "--prefill: -1 is not between 0 and 1e+08"),
        (["--prefill", "9" * 40], "is not between 0 and 1e+08"),
        (["--events", "ten"], "--events: not a number: 'ten'"),
        (["--batch", ""], "--batch: not a number: ''"),
        (["--events", "1e3"], "--events: not a number: '1e3'"),
        (["--reads", "-1"], "--reads: -1 is not between 0 and 100000"),
    ],
)
def test_counts_it_cannot_run_are_refused_before_any_work(args: list[str], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert message in done.stderr
