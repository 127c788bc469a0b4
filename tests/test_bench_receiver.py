"""bench_receiver: every phase applies the whole stream, the child receiver is counted and
gone after, and a bad command line is a clear error."""

from __future__ import annotations

import asyncio
import multiprocessing

import pytest

from bench import bench_receiver


def test_each_phase_takes_the_whole_stream_and_the_child_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = bench_receiver.arguments().parse_args(["--events", "2000", "--rounds", "1"])
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
