"""One simulator run: connect, make sure the stream exists, publish with progress, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from pulse_bi.contract import STREAM_NAME
from pulse_bi.simulator.events import SimMessage
from pulse_bi.simulator.publisher import PublishError, PublishStats, publish
from pulse_bi.streams import ensure_stream

#: Seconds between progress display refreshes.
REFRESH_INTERVAL = 0.25


class SimulationError(RuntimeError):
    """The run could not publish: no server, no stream, refused messages."""


@dataclass
class RunResult:
    """What a run published and what the stream holds afterwards."""

    stats: PublishStats
    #: The messages published, in order (only when the run was asked to record them).
    messages: list[SimMessage] = field(default_factory=list)
    stream_messages: int = 0
    stream_last_sequence: int = 0

    def summary(self, seed: int) -> str:
        """One paragraph for the terminal."""
        s = self.stats
        return (
            f"published {s.published:,} messages in {s.elapsed:.2f} s ({s.rate:,.0f}/s), "
            f"seed {seed}: {s.stored:,} stored, {s.duplicates:,} dropped by JetStream as "
            f"duplicates; stream {STREAM_NAME} holds {self.stream_messages:,} messages "
            f"(last sequence {self.stream_last_sequence:,})"
        )


def _recorded(source: Iterable[SimMessage], into: list[SimMessage]) -> Iterator[SimMessage]:
    for message in source:
        into.append(message)
        yield message


async def _show_progress(
    stats: PublishStats, console: Console, total: int | None, stop: asyncio.Event
) -> None:
    """Redraw published/acked totals and the rate until ``stop`` is set."""
    columns = [
        TextColumn("[bold]publishing"),
        BarColumn() if total else TextColumn(""),
        MofNCompleteColumn() if total else TextColumn("{task.completed:,.0f} sent"),
        TextColumn("{task.fields[rate]:>9,.0f} events/s"),
        TextColumn("{task.fields[acked]:,} acknowledged"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("publish", total=total, rate=0.0, acked=0)
        last_acked, last_time = 0, stats.elapsed
        while True:
            now = stats.elapsed
            # The rate over the last refresh shows slowdowns the run average hides.
            rate = (stats.acked - last_acked) / (now - last_time) if now > last_time else 0.0
            last_acked, last_time = stats.acked, now
            progress.update(task, completed=stats.published, rate=rate, acked=stats.acked)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_INTERVAL)


async def run_simulation(
    nats_url: str,
    source: Iterable[SimMessage],
    *,
    rate: float | None = None,
    ack_every: int = 1,
    duration: float | None = None,
    duplicate_window: float = 120.0,
    record: bool = False,
    console: Console | None = None,
    show_progress: bool = False,
    total: int | None = None,
) -> RunResult:
    """Publish ``source`` to the server at ``nats_url`` until it ends, Ctrl-C or ``duration``."""
    errors: list[Exception] = []

    async def keep_error(error: Exception) -> None:
        errors.append(error)  # reported once, below, rather than logged with a traceback

    try:
        nc = await nats.connect(
            nats_url,
            connect_timeout=5,
            max_reconnect_attempts=3,
            allow_reconnect=True,
            error_cb=keep_error,
        )
    except (OSError, TimeoutError, NatsError) as error:
        cause = f" ({errors[-1]})" if errors else ""
        raise SimulationError(f"cannot connect to NATS at {nats_url}: {error}{cause}") from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    finished = asyncio.Event()
    # The handlers found are put back afterwards: removing a loop's handler would leave
    # SIGINT with Python's default, whatever the caller had set.
    handled: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, stop.set)  # Ctrl-C ends the run, acks still counted
            handled[sig] = previous
    stats = PublishStats()
    result = RunResult(stats)
    display = None
    try:
        js = nc.jetstream()
        await ensure_stream(js, duplicate_window=duplicate_window)
        if show_progress and console is not None:
            display = asyncio.create_task(_show_progress(stats, console, total, finished))
        messages = _recorded(source, result.messages) if record else source
        await publish(
            nc,
            messages,
            rate=rate,
            ack_every=ack_every,
            stats=stats,
            stop=stop,
            duration=duration,
        )
        info = await js.stream_info(STREAM_NAME)
        result.stream_messages = info.state.messages
        result.stream_last_sequence = info.state.last_seq
    except PublishError as error:
        raise SimulationError(str(error)) from None
    except (JetStreamError, NatsError, TimeoutError) as error:
        raise SimulationError(f"JetStream error: {error!r}") from None
    finally:
        finished.set()
        if display is not None:
            await display
        for sig, previous in handled.items():
            loop.remove_signal_handler(sig)
            if previous is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, previous)
        with contextlib.suppress(NatsError):
            await nc.drain()
    # The recording may hold one message taken from the source but not sent (stop).
    del result.messages[stats.published :]
    return result
