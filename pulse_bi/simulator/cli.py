"""``pulse-bi simulate``: publish seeded ERP traffic to JetStream.

Domain errors (no NATS, refused messages) become CLI errors here and only here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from pulse_bi.options import SHOW_DEFAULTS, EnvNumber
from pulse_bi.settings import Float
from pulse_bi.simulator.generator import (
    generate,
    iter_messages,
    live_clock,
    utc_now,
)
from pulse_bi.simulator.runner import SimulationError, run_simulation

DEFAULT_COUNT = 10_000
#: Without --rate, ask for an ack on every 16th message only (see publisher.py).
FAST_ACK_EVERY = 16


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    """Everything one ``simulate`` run needs, read once from options and environment."""

    nats_url: str
    count: int | None
    rate: float | None
    duration: float | None
    seed: int
    out_of_order: float
    duplicates: float
    bad: float
    window: timedelta
    end: datetime | None
    expected_path: Path | None
    as_of: date | None
    duplicate_window: float
    ack_every: int
    quiet: bool


def _parse_end(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint="--end") from None
    if moment.tzinfo is None:
        raise click.BadParameter("needs a timezone, e.g. 2026-11-25T12:00:00Z", param_hint="--end")
    return moment.astimezone(UTC)


# Numbers parsed like settings: finite (no nan, which would never end a --duration, nor
# inf), within bounds, with the same errors (pulse_bi/options.py).
_FRACTION = EnvNumber(Float(0.0, 1.0))
_POSITIVE = EnvNumber(Float(0.0, above=True))
#: A century of hours: past it the event times leave the contract's years.
_HOURS = EnvNumber(Float(0.0, 24 * 366 * 100))
#: A year: JetStream keeps the window in nanoseconds.
_WINDOW_SECONDS = EnvNumber(Float(0.0, 366 * 86400, above=True))
F = TypeVar("F", bound=Callable[..., Any])


def _option(flag: str, *names: str, **attributes: Any) -> Callable[[F], F]:
    """An option also read from PULSE_SIM_<its flag> (``--out-of-order``:
    PULSE_SIM_OUT_OF_ORDER)."""
    envvar = "PULSE_SIM_" + flag.removeprefix("--").replace("-", "_").upper()
    return click.option(flag, *names, envvar=envvar, **attributes)


@click.command("simulate", context_settings=SHOW_DEFAULTS)
@click.option(
    "--nats-url",
    envvar=["PULSE_SIM_NATS_URL", "NATS_URL"],
    default="nats://127.0.0.1:4222",
    help="NATS server to publish to (env PULSE_SIM_NATS_URL or NATS_URL).",
)
@_option(
    "--count",
    type=click.IntRange(min=0),
    help=f"Publish this many messages, then stop (default {DEFAULT_COUNT:,} without --rate).",
)
@_option(
    "--rate",
    type=_POSITIVE,
    help="Messages per second, with event times following the clock. Without --count it "
    "runs until Ctrl-C or --duration.",
)
@_option(
    "--duration",
    type=_POSITIVE,
    help="Stop after this many seconds of publishing (with --rate: after the messages due "
    "in them).",
)
@_option(
    "--seed",
    type=int,
    help="Random seed; the same seed (and --end) gives the same events and ids. "
    "Default: a fresh seed, printed at the end.",
)
@_option(
    "--out-of-order",
    type=_FRACTION,
    default=0.02,
    help="Share of cancellations and payments published before their order or invoice.",
)
@_option(
    "--duplicates",
    type=_FRACTION,
    default=0.01,
    help="Share of messages re-sending a recent event with the same id: half with the same "
    "Nats-Msg-Id (JetStream drops them), half without it (the consumer must ignore them).",
)
@_option(
    "--bad",
    type=_FRACTION,
    default=0.001,
    help="Share of messages with bad input, every kind in turn (invalid JSON, not a "
    "CloudEvent, unknown type, missing or mistyped field, >2 decimals, time without "
    "timezone, order id created twice).",
)
@_option(
    "--window-hours",
    type=_HOURS,
    default=48.0,
    help="Without --rate: event times spread over this many hours before --end.",
)
@_option(
    "--end",
    help="ISO-8601 time (with offset) the event window ends at; with --rate, the time of "
    "the first event. Default: now.",
)
@_option(
    "--expected",
    "expected_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the aggregates the published messages must produce to this JSON file.",
)
@_option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="AR aging date of the expected aggregates. Default: the UTC date of the window end.",
)
@_option(
    "--duplicate-window",
    type=_WINDOW_SECONDS,
    default=120.0,
    help="Duplicate window (seconds) of the PULSE_EVENTS stream when this run creates it.",
)
@_option(
    "--ack-every",
    type=click.IntRange(min=1),
    help=f"Ask JetStream to acknowledge every N-th message only (default {FAST_ACK_EVERY} "
    "without --rate, else 1); stored and dropped counts then come from the stream's "
    "sequence, exact only while nothing else publishes to it.",
)
@_option(
    "--quiet",
    is_flag=True,
    help="Print nothing but errors.",
)
def simulate_command(
    nats_url: str,
    count: int | None,
    rate: float | None,
    duration: float | None,
    seed: int | None,
    out_of_order: float,
    duplicates: float,
    bad: float,
    window_hours: float,
    end: str | None,
    expected_path: Path | None,
    as_of: datetime | None,
    duplicate_window: float,
    ack_every: int | None,
    quiet: bool,
) -> None:
    """Publish seeded Pulse ERP events (orders, invoices, payments, stock, catalog)."""
    if duplicates + bad > 1:
        raise click.UsageError("--duplicates plus --bad must not exceed 1")
    options = SimulateOptions(
        nats_url=nats_url,
        count=count if count is not None or rate is not None else DEFAULT_COUNT,
        rate=rate,
        duration=duration,
        seed=seed if seed is not None else secrets.randbelow(2**31),
        out_of_order=out_of_order,
        duplicates=duplicates,
        bad=bad,
        window=timedelta(hours=window_hours),
        end=_parse_end(end),
        expected_path=expected_path,
        as_of=as_of.date() if as_of else None,
        duplicate_window=duplicate_window,
        ack_every=ack_every or (1 if rate is not None else FAST_ACK_EVERY),
        quiet=quiet,
    )
    console = Console(stderr=True, quiet=quiet)
    try:
        summary = _run(options, console)
    except SimulationError as error:
        raise click.ClickException(str(error)) from None
    if not quiet:
        click.echo(summary)


def _run(options: SimulateOptions, console: Console) -> str:
    """Build the message source for the options and run the simulation on uvloop."""
    source: Any
    end = options.end or utc_now()
    if options.rate is None:
        with console.status("generating events…"):
            scenario = generate(
                options.seed,
                options.count or 0,
                out_of_order=options.out_of_order,
                duplicates=options.duplicates,
                bad=options.bad,
                start=end - options.window,
                end=end,
            )
        source = scenario.messages
    else:
        # A live run bootstraps its catalog first: keep that to a few seconds of traffic.
        scale = options.count or min(50_000, max(2_000, int(options.rate * 60)))
        source = iter_messages(
            options.seed,
            clock=live_clock(end, options.rate),
            scale=scale,
            out_of_order=options.out_of_order,
            duplicates=options.duplicates,
            bad=options.bad,
        )
        if options.count is not None:
            source = itertools.islice(source, options.count)
    as_of = options.as_of or end.date()
    coroutine = run_simulation(
        options.nats_url,
        source,
        rate=options.rate,
        ack_every=options.ack_every,
        duration=options.duration,
        duplicate_window=options.duplicate_window,
        record=options.expected_path is not None,
        console=console,
        show_progress=not options.quiet and console.is_terminal,
        total=options.count,
    )
    result = _run_loop(coroutine)
    if options.expected_path is not None:
        from pulse_bi.simulator.expected import expected_aggregates

        expected = expected_aggregates(result.messages, as_of=as_of)
        expected["scenario"] = {
            "seed": options.seed,
            "out_of_order": options.out_of_order,
            "duplicates": options.duplicates,
            "bad": options.bad,
            "as_of": as_of.isoformat(),
        }
        options.expected_path.write_text(json.dumps(expected, indent=1) + "\n")
    return result.summary(options.seed)


def _run_loop(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed on Linux and macOS
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
