"""``pulse-bi dev``: the whole system on one machine, for trying it out.

Starts a local nats-server with JetStream (store under the data directory), the
materializer on a DuckDB file there, the gateway on port 8004 and the simulator feeding
events, each as its own process like in production; Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from pulse_bi.natsserver import LocalNatsServer, NatsServerNotFound

console = Console(stderr=True)


@click.command()
@click.option(
    "--data-path",
    envvar="DATA_PATH",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the DuckDB file and the NATS store.",
)
@click.option(
    "--port",
    envvar="GATEWAY_PORT",
    default=8004,
    show_default=True,
    help="Gateway HTTP port (GraphQL, REST, kiosk).",
)
@click.option(
    "--nats-port",
    envvar="PULSE_DEV_NATS_PORT",
    default=4250,
    show_default=True,
    help="Port of the local nats-server started for this run.",
)
@click.option(
    "--rate",
    envvar="PULSE_DEV_RATE",
    default=20.0,
    show_default=True,
    help="Simulated events per second (0: no simulator).",
)
@click.option(
    "--seed-events",
    envvar="PULSE_DEV_SEED_EVENTS",
    default=5000,
    show_default=True,
    help="Events published at start so the dashboards have history.",
)
def dev_command(data_path: Path, port: int, nats_port: int, rate: float, seed_events: int) -> None:
    """Run nats-server, materializer, gateway and simulator locally (Ctrl-C stops all)."""
    data_path.mkdir(parents=True, exist_ok=True)
    server = LocalNatsServer(store_dir=data_path / "nats", port=nats_port)
    try:
        server.start()
    except NatsServerNotFound as exc:
        raise click.ClickException(str(exc)) from None
    except (RuntimeError, TimeoutError) as exc:
        raise click.ClickException(
            f"{exc}; is port {nats_port} taken? pick another with --nats-port"
        ) from None
    env = {
        **os.environ,
        "NATS_URL": server.url,
        "DATA_PATH": str(data_path),
        "GATEWAY_PORT": str(port),
    }
    children: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-m", "pulse_bi", *args], env=env)
        children.append(child)
        return child

    try:
        spawn("materializer")
        spawn("gateway", "serve")
        if seed_events:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pulse_bi",
                    "simulate",
                    "--count",
                    str(seed_events),
                    "--quiet",
                ],
                env=env,
                check=True,
            )
        if rate > 0:
            spawn("simulate", "--rate", str(rate), "--quiet")
        console.print(
            f"[bold green]Pulse BI is running[/]\n"
            f"  GraphiQL   http://127.0.0.1:{port}/graphql\n"
            f"  Kiosk      http://127.0.0.1:{port}/kiosk\n"
            f"  REST       http://127.0.0.1:{port}/query/sales/hourly?hours=24\n"
            f"  Health     http://127.0.0.1:{port}/health\n"
            f"  NATS       {server.url} (store {data_path / 'nats'})\n"
            f"  DuckDB     {data_path / 'pulse_bi.duckdb'}\n"
            "Ctrl-C stops everything."
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [c for c in children if c.poll() not in (None, 0)]
        if failed:
            raise click.ClickException(
                f"a process exited with code {failed[0].returncode}: {failed[0].args!r}"
            )
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        server.stop()
