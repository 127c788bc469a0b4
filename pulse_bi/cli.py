"""``pulse-bi``: one command group for every process and tool.

Domain errors become CLI errors here and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from typing import Any

import click

from pulse_bi import __version__


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_async(main: Any) -> None:
    """Run a coroutine on uvloop where available."""
    try:
        import uvloop

        uvloop.run(main)
    except ImportError:  # pragma: no cover - uvloop is installed on Linux and macOS
        asyncio.run(main)


#: The commands that live next to the code they run: name → ``module:attribute``.
_LAZY_COMMANDS = {
    "dev": "pulse_bi.dev:dev_command",
    "simulate": "pulse_bi.simulator.cli:simulate_command",
    "publish": "pulse_bi.publish:publish_command",
    "gateway": "gateway.cli:gateway_command",
    "backup": "pulse_bi.lifecycle:backup_command",
    "restore": "pulse_bi.lifecycle:restore_command",
    "rebuild": "pulse_bi.lifecycle:rebuild_command",
    "export": "gateway.exports.cli:export_command",
}


class _LazyGroup(click.Group):
    """Imports a command's module when the command is named (click's "lazily loading
    subcommands"): importing them all made ``pulse-bi materializer`` load the gateway,
    Strawberry and Arrow's Parquet libraries, 24 MB of RSS it never uses
    (docs/OPERATIONS.md, "Memory")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="pulse-bi")
def main() -> None:
    """Pulse BI: live analytics for Pulse ERP on NATS JetStream and DuckDB."""


@main.command()
@click.option(
    "--check",
    is_flag=True,
    help="Probe a running materializer's /health (MATERIALIZER_HTTP_PORT) and exit 0 "
    "when healthy, 1 otherwise.",
)
def materializer(check: bool) -> None:
    """Consume the event stream into DuckDB and answer named queries over NATS.

    Settings come from the environment (docs/OPERATIONS.md): NATS_URL, DATA_PATH,
    DUCKDB_PATH, MATERIALIZER_HTTP_PORT, BATCH_MAX_EVENTS, …
    """
    from materializer.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(f"bad setting: {exc}") from None
    if check:
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
        sys.exit(_probe(f"http://{host}:{settings.http_port}/health"))
    _configure_logging(settings.log_level)
    from pulse_bi.tracing import configure_from_env

    # Requests from a tracing gateway carry `traceparent`; export their spans (OTEL_*).
    configure_from_env("pulse-bi-materializer", os.environ)
    run_async(_run_materializer(settings))


async def _run_materializer(settings: Any) -> None:
    from materializer.app import Materializer
    from materializer.db import DatabaseFileError

    log = logging.getLogger("pulse_bi.materializer")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = Materializer(settings)
    try:
        # Starting may wait (NATS unreachable: nats-py retries forever); a signal ends
        # that wait too. Cancelling the start closes what was opened.
        starting = asyncio.create_task(running.__aenter__())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("stopped while starting (%s)", running.starting_step)
            return
        stopper.cancel()
        starting.result()
        try:
            await running.run_until(stop)
        finally:
            await running.close()
    except DatabaseFileError as exc:  # the file cannot be used as it is: fix, not retry
        log.error("%s", exc)
        raise SystemExit(2) from exc
    except Exception as exc:
        log.error("%s", exc)
        raise SystemExit(1) from exc


def _probe(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            body = json.load(response)
            click.echo(json.dumps(body))
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        click.echo(f"unhealthy: {exc}", err=True)
        return 1


@main.group()
def migrate() -> None:
    """Show or apply the DuckDB schema migrations."""


@migrate.command("status")
def migrate_status() -> None:
    """Print the schema version of DUCKDB_PATH and the pending migrations.

    Exit 2 with one line on a file that is not a usable DuckDB database (SQLite, random
    bytes, truncated, corrupt), that another process holds, or that is newer than this code.
    """
    from materializer.db import migration_status
    from materializer.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(f"bad setting: {exc}") from None
    status = _file_step(lambda: migration_status(settings.duckdb_path))
    click.echo(f"database: {settings.duckdb_path}")
    click.echo(f"version:  {status.current} (latest {status.latest})")
    if status.pending:
        click.echo("pending:")
        for name in status.pending:
            click.echo(f"  {name}")
    else:
        click.echo("pending:  none")
    if status.too_new:
        _fail(status.too_new_message(settings.duckdb_path))


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _file_step(step: Any) -> Any:
    """Run ``step``; a DuckDB file it cannot use is one line on stderr and exit 2."""
    import duckdb

    from materializer.db import DatabaseFileError

    try:
        return step()
    except DatabaseFileError as exc:
        _fail(str(exc))
    except duckdb.Error as exc:
        _fail(f"cannot read the DuckDB file: {' '.join(str(exc).split())}")


@migrate.command("upgrade")
def migrate_upgrade() -> None:
    """Apply pending migrations to DUCKDB_PATH (the materializer also does at start)."""
    from materializer.db import upgrade
    from materializer.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(f"bad setting: {exc}") from None
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    status = _file_step(lambda: upgrade(settings.duckdb_path))
    click.echo(f"{settings.duckdb_path}: version {status.current}, up to date")
