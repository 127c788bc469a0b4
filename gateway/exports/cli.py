"""``pulse-bi export QUERY --format F --out FILE``: an export for scripts and cron.

It asks the materializer over NATS directly (no gateway needed) with the same parameter
parsing, paging and writers as ``/export`` (docs/EXPORTS.md, "Command line"). The file
appears only when complete: it is written next to FILE and renamed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.errors import GatewayError
from gateway.exports.params import parse_export_params
from gateway.exports.stream import Export, TooManyRows, file_name
from gateway.exports.writers import FORMATS
from gateway.metrics import Metrics
from gateway.settings import Settings, SettingsError
from gateway.upstream import Upstream
from gateway.versions import Versions
from pulse_bi.contract import BY_NAME


@click.command("export")
@click.argument("query", type=click.Choice(list(BY_NAME)))
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="csv", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write ('-' for stdout); default <query>_<range>.<format> here.",
)
@click.option(
    "--param",
    "-p",
    "items",
    multiple=True,
    metavar="NAME=VALUE",
    help="A query parameter by its wire name, e.g. -p from=2026-01-01T00:00:00Z (repeatable).",
)
@click.option("--nats-url", envvar="NATS_URL", default=None, help="NATS server URL (NATS_URL).")
@click.option(
    "--timeout",
    type=click.FloatRange(0.01),
    default=10.0,
    show_default=True,
    help="Seconds to wait for each page.",
)
def export_command(
    query: str,
    fmt: str,
    out: Path | None,
    items: tuple[str, ...],
    nats_url: str | None,
    timeout: float,
) -> None:
    """Export one named query's rows as CSV, XLSX or Parquet."""
    pairs = []
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        pairs.append((name, value))
    try:
        settings = Settings.from_env(os.environ)
        if nats_url:
            settings = settings.replace(nats_url=nats_url)
        settings = settings.replace(query_timeout=timeout)
    except SettingsError as exc:
        raise click.UsageError(f"bad setting: {exc}") from None
    spec = BY_NAME[query]
    try:
        params = parse_export_params(spec, pairs, settings.export_max_rows)
    except GatewayError as exc:
        raise click.UsageError(exc.message) from None
    target = out if out is not None else Path(file_name(params, fmt))
    try:
        rows = asyncio.run(_export(settings, params, fmt, target))
    except (GatewayError, TooManyRows) as exc:
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        click.echo(f"export failed: {message}", err=True)
        sys.exit(1)
    if str(target) != "-":
        click.echo(f"{rows} rows -> {target}", err=True)


async def _export(settings: Settings, params: Any, fmt: str, target: Path) -> int:
    metrics = Metrics()
    upstream = Upstream(settings, Versions(settings.version_ttl), metrics)
    await upstream.start()
    try:
        job = Export(upstream.request, params, fmt, settings.export_max_rows)
        await job.open()
        if str(target) == "-":
            async for chunk in job.chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return job.rows
        partial = target.with_name(f".{target.name}.partial")
        try:
            with partial.open("wb") as file:
                async for chunk in job.chunks():
                    file.write(chunk)
            partial.replace(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return job.rows
    finally:
        await upstream.close()
