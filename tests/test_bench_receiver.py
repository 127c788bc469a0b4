"""bench_receiver: every phase applies the whole stream, the child receiver is counted and
gone after, and a bad command line is a clear error."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from pathlib import Path

import pytest

from bench import bench_receiver
from materializer.settings import Settings


def test_each_phase_takes_the_whole_stream_and_the_child_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Enough events for each child to use a few of psutil's 10 ms ticks of CPU.
    args = bench_receiver.arguments().parse_args(["--events", "10000", "--rounds", "1"])
    phases = asyncio.run(bench_receiver.main(args))
    assert list(phases) == ["raw", "materializer", "in process", "child process", "child batches"]
    assert all(len(phase.rates) == 1 and phase.rates[0] > 0 for phase in phases.values())
    # The loops' writers applied batches; the children received the stream.
    loops = ("in process", "child process", "child batches")
    assert all(phases[name].writer_cpu > 0 for name in loops)
    assert phases["child process"].child_cpu > 0 and phases["child batches"].child_cpu > 0
    assert phases["in process"].child_cpu == 0
    assert multiprocessing.active_children() == []
    out = capsys.readouterr().out
    for name in phases:
        assert f"\n{name}: " in out
    assert "the child " in out and "nats-server " in out


@pytest.mark.parametrize("argv", [["--events", "0"], ["--rounds", "0"], ["--events", "x"]])
def test_a_bad_value_is_a_clear_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_receiver.arguments().parse_args(argv)
    assert exit_.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def _ready_then_gone(url: str, sock: socket.socket, batch_max: int) -> None:
    """A child of "child batches" that says it is ready, then exits."""
    sock.sendall(b"\0" * 4)


def _ready_then_stuck(url: str, sock: socket.socket, batch_max: int) -> None:
    """A child of "child batches" that says it is ready, then sends nothing."""
    sock.sendall(b"\0" * 4)
    time.sleep(60)


@pytest.mark.parametrize(
    ("child", "error"), [(_ready_then_gone, ConnectionError), (_ready_then_stuck, TimeoutError)]
)
def test_a_child_that_goes_away_or_sends_nothing_ends_the_phase(
    tmp_path: Path, child: object, error: type[Exception]
) -> None:
    phase = bench_receiver.Phase([])
    started = time.perf_counter()
    with pytest.raises(error):
        asyncio.run(
            bench_receiver.in_child_batches(
                "nats://127.0.0.1:1",
                Settings.from_env(),
                tmp_path / "stuck.duckdb",
                1000,
                phase,
                target=child,  # type: ignore[arg-type]
                timeout=1.0,
            )
        )
    assert time.perf_counter() - started < 30  # the child is stopped, not waited for
    assert multiprocessing.active_children() == []
    assert phase.writer_cpu == 0  # nothing was applied
