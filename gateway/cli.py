"""`pulse-bi gateway …`: serve the gateway, export its schema."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.settings import Settings, SettingsError
from pulse_bi.options import PORT


@click.group("gateway", invoke_without_command=True)
@click.pass_context
def gateway_command(ctx: click.Context) -> None:
    """The GraphQL gateway (default: serve)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@gateway_command.command()
@click.option("--host", envvar="GATEWAY_HOST", help="Interface to bind (GATEWAY_HOST).")
@click.option(
    "--port", envvar="GATEWAY_PORT", type=PORT, help="HTTP port, default 8004 (GATEWAY_PORT)."
)
@click.option("--nats-url", envvar="NATS_URL", default=None, help="NATS server URL (NATS_URL).")
@click.option(
    "--check",
    is_flag=True,
    help="Probe a running gateway's /health and exit 0 when healthy, 1 otherwise.",
)
def serve(host: str | None, port: int | None, nats_url: str | None, check: bool) -> None:
    """Serve GraphQL, subscriptions and REST on uvicorn (one process; run more to scale out)."""
    try:
        settings = Settings.from_env(os.environ)
        given = {"host": host, "port": port, "nats_url": nats_url}
        changes = {k: v for k, v in given.items() if v is not None}
        settings = settings.replace(**changes)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if check:
        _check(settings)
        return
    import logging

    import uvicorn

    from gateway.app import create_app, tune_gc, uvicorn_options

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if settings.tracing:
        from pulse_bi.tracing import AVAILABLE, configure_from_env

        if not AVAILABLE:
            raise click.UsageError(
                "GATEWAY_TRACING=true needs the OpenTelemetry packages: "
                "pip install 'pulse-bi[tracing]'"
            )
        configure_from_env("pulse-bi-gateway", os.environ)
    tune_gc()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        **uvicorn_options(settings),
    )


def _check(settings: Settings) -> None:
    import httpx

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    try:
        response = httpx.get(f"http://{host}:{settings.port}/health", timeout=3)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"gateway not reachable: {exc}") from None
    if response.status_code != 200:
        reason = response.json().get("reason", response.text)
        raise click.ClickException(f"gateway unhealthy: {reason}")
    click.echo("gateway healthy")


def _output_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--output/-o FILE`: where a command writes what it would print."""
    return click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=help_text,
    )


@gateway_command.command("export-schema")
@_output_option("Write the SDL to this file instead of stdout (e.g. schema.graphql).")
def export_schema_command(output: Path | None) -> None:
    """Print the GraphQL schema (SDL), as checked in at schema.graphql."""
    from gateway.schema import export_schema

    text = export_schema()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


@gateway_command.command("trusted-documents")
@_output_option(
    "Write the manifest here instead of stdout (the built-in one is "
    "gateway/trusted-documents.json)."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path(__file__).resolve().parents[1],
    show_default="the source tree",
    help="Repository root holding grafana/dashboards and gateway/kiosk.",
)
@click.option(
    "--add",
    "extra",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Also include every operation of this .graphql file (repeatable).",
)
def trusted_documents_command(output: Path | None, root: Path, extra: tuple[Path, ...]) -> None:
    """Print the trusted-documents manifest of the Grafana dashboards and the kiosk page."""
    from gateway.persisted import graphql_file_documents, manifest_json, repository_documents

    try:
        documents = repository_documents(root)
        for path in extra:
            documents.extend(graphql_file_documents(path))
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    text = manifest_json(documents)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} ({len(set(documents))} operations)")
