"""``pulse-bi dev``: the whole system on one machine, for trying it out (``make up``).

Checks every port first, then starts a local nats-server with JetStream (store under the
data directory), seeds demo history once per data directory, and runs the materializer,
the gateway and the live simulator, each as its own process like in production. Ctrl-C
stops them in order: simulator, gateway, materializer, NATS (docs/OPERATIONS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console

from pulse_bi.natsserver import LocalNatsServer, NatsServerNotFound
from pulse_bi.options import PORT, SHOW_DEFAULTS, EnvNumber
from pulse_bi.ports import holder, port_free
from pulse_bi.settings import Float, Int

console = Console(stderr=True)

#: Written into the data directory once its demo history is published.
SEED_MARKER = ".demo-seeded"
#: Seconds Ctrl-C may take to stop everything, and each process's share of it, in order.
STOP_BUDGET = 3.0
_STOP_SHARES = {"simulator": 0.4, "gateway": 0.9, "materializer": 1.0}


@dataclass(frozen=True)
class Need:
    """A port this run needs, and how a user changes it."""

    what: str
    port: int
    variable: str
    flag: str


def check_ports(host: str, needs: list[Need]) -> None:
    """Stop with one message naming the first taken port, its holder and what to change."""
    seen: dict[int, Need] = {}
    for need in needs:
        if need.port in seen:
            other = seen[need.port]
            raise click.UsageError(
                f"{need.what} and {other.what} are both set to port {need.port}; "
                f"set {need.variable} (or {need.flag}) to another port"
            )
        seen[need.port] = need
        bind = "127.0.0.1" if need.what == "NATS" else host
        if not port_free(bind, need.port):
            who = holder(need.port)
            held = f" by {who}" if who else ""
            raise click.ClickException(
                f"port {need.port} ({need.what}) is already in use{held}; nothing was started. "
                f"Set {need.variable}=<port> (or {need.flag} <port>) to use another one."
            )


async def _stream_messages(url: str) -> int:
    import nats
    from nats.js.errors import NotFoundError

    from pulse_bi.contract import STREAM_NAME

    # One try, bounded: a wrong URL must fail now, not retry forever.
    nc = await asyncio.wait_for(nats.connect(url, connect_timeout=2, allow_reconnect=False), 5)
    try:
        info = await nc.jetstream().stream_info(STREAM_NAME)
        return int(info.state.messages)
    except NotFoundError:
        return 0
    finally:
        await nc.close()


def needs_seed(data_path: Path, nats_url: str) -> bool:
    """Whether this data directory still lacks its demo history (marker, else the stream)."""
    marker = data_path / SEED_MARKER
    if marker.exists():
        return False
    try:
        stored = asyncio.run(_stream_messages(nats_url))
    except Exception as exc:
        raise click.ClickException(f"cannot read the stream at {nats_url}: {exc}") from None
    if stored > 0:
        # History from an earlier run without the marker: keep it as it is.
        marker.write_text("stream already had events\n", encoding="utf-8")
        return False
    return True


class Children:
    """The child processes, each in its own session so Ctrl-C reaches only this one."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``pulse-bi ARGS`` as ``name``."""
        child = subprocess.Popen(
            [sys.executable, "-m", "pulse_bi", *args], env=self.env, start_new_session=True
        )
        self.running[name] = child
        return child

    def exited(self) -> tuple[str, int] | None:
        """The first child that has exited, with its code."""
        for name, child in self.running.items():
            code = child.poll()
            if code is not None:
                return name, code
        return None

    def stop(self, name: str, budget: float) -> None:
        """SIGTERM, then SIGKILL once ``budget`` seconds have passed."""
        child = self.running.pop(name, None)
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=max(0.05, budget))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _seed(children: Children, data_path: Path, count: int) -> None:
    console.print(f"seeding {count:,} demo events (once for {data_path})…")
    seed = children.spawn(
        "seed", "simulate", "--count", str(count), "--window-hours", "24", "--quiet"
    )
    code = seed.wait()
    children.running.pop("seed", None)
    if code != 0:
        raise click.ClickException(f"seeding the demo history failed (exit code {code})")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    (data_path / SEED_MARKER).write_text(f"{count} events at {stamp}\n", encoding="utf-8")


@click.command(context_settings=SHOW_DEFAULTS)
@click.option(
    "--data-path",
    envvar="DATA_PATH",
    default="data",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the DuckDB file and the NATS store (DATA_PATH).",
)
@click.option(
    "--host",
    envvar="PULSE_DEV_HOST",
    default="127.0.0.1",
    help="Interface the gateway and the materializer's HTTP server bind to "
    "(PULSE_DEV_HOST; 0.0.0.0 opens the unauthenticated dev API to the network).",
)
@click.option(
    "--port",
    envvar="GATEWAY_PORT",
    default=8004,
    type=PORT,
    help="Gateway HTTP port: GraphQL, GraphiQL, REST, kiosk (GATEWAY_PORT).",
)
@click.option(
    "--nats-port",
    envvar="PULSE_DEV_NATS_PORT",
    default=4250,
    type=PORT,
    help="Port of the local nats-server started for this run (PULSE_DEV_NATS_PORT).",
)
@click.option(
    "--materializer-port",
    envvar="MATERIALIZER_HTTP_PORT",
    default=8005,
    type=PORT,
    help="Port of the materializer's /health and /metrics (MATERIALIZER_HTTP_PORT).",
)
@click.option(
    "--rate",
    envvar="PULSE_DEV_RATE",
    default=0.5,
    type=EnvNumber(Float(0)),
    help="Live simulated events per second, about a fifth of them orders: 0.5 makes about "
    "as many orders an hour as the seeded history has (PULSE_DEV_RATE; 0: none).",
)
@click.option(
    "--seed-events",
    envvar="PULSE_DEV_SEED_EVENTS",
    default=40_000,
    type=EnvNumber(Int(0)),
    help="Events of demo history over the last 24 h, published once per data directory "
    "(PULSE_DEV_SEED_EVENTS).",
)
def dev_command(
    data_path: Path,
    host: str,
    port: int,
    nats_port: int,
    materializer_port: int,
    rate: float,
    seed_events: int,
) -> None:
    """Run nats-server, materializer, gateway and simulator locally (Ctrl-C stops all)."""
    check_ports(
        host,
        [
            Need("NATS", nats_port, "PULSE_DEV_NATS_PORT", "--nats-port"),
            Need(
                "materializer HTTP",
                materializer_port,
                "MATERIALIZER_HTTP_PORT",
                "--materializer-port",
            ),
            Need("gateway", port, "GATEWAY_PORT", "--port"),
        ],
    )
    data_path.mkdir(parents=True, exist_ok=True)
    server = LocalNatsServer(store_dir=data_path / "nats", port=nats_port, own_session=True)
    try:
        server.start()
    except NatsServerNotFound as exc:
        raise click.ClickException(str(exc)) from None
    except (RuntimeError, TimeoutError) as exc:
        raise click.ClickException(
            f"{exc}; is port {nats_port} taken? set PULSE_DEV_NATS_PORT or --nats-port"
        ) from None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_SIM_")}
    env.update(
        NATS_URL=server.url,
        DATA_PATH=str(data_path),
        GATEWAY_PORT=str(port),
        GATEWAY_HOST=host,
        MATERIALIZER_HTTP_PORT=str(materializer_port),
        MATERIALIZER_HTTP_HOST=host,
    )
    env.pop("DUCKDB_PATH", None)
    _interrupt_on(signal.SIGINT, signal.SIGTERM)
    children = Children(env)
    started = False
    try:
        if seed_events and needs_seed(data_path, server.url):
            _seed(children, data_path, seed_events)
        children.spawn("materializer", "materializer")
        children.spawn("gateway", "gateway", "serve")
        if rate > 0:
            children.spawn("simulator", "simulate", "--rate", f"{rate:g}", "--quiet")
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{shown}:{port}"
        console.print(
            f"[bold green]Pulse BI is running[/] (bound to {host})\n"
            f"  Start here {base}/\n"
            f"  GraphiQL   {base}/graphql\n"
            f"  Kiosk      {base}/kiosk\n"
            f"  REST       {base}/query/sales/hourly?hours=24\n"
            f"  Health     {base}/health  (materializer: http://{shown}:{materializer_port}/health)\n"
            f"  NATS       {server.url} (store {data_path / 'nats'})\n"
            f"  DuckDB     {data_path / 'pulse_bi.duckdb'}\n"
            f"Other tools reach this NATS with NATS_URL={server.url}\n"
            "Ctrl-C stops everything."
        )
        started = True
        while (ended := children.exited()) is None:
            time.sleep(0.2)
        name, code = ended
        raise click.ClickException(f"the {name} exited with code {code}; stopping the rest")
    except KeyboardInterrupt:
        pass
    finally:
        _stop_all(children, server, announce=started)


def _interrupt_on(*signals: signal.Signals) -> None:
    """Ctrl-C and SIGTERM both stop in order (a shell starts background jobs with SIGINT
    ignored, and a service manager sends SIGTERM)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in signals:
        signal.signal(sig, interrupt)


def _stop_all(children: Children, server: LocalNatsServer, *, announce: bool) -> None:
    """Stop in order (simulator, gateway, materializer, NATS) within STOP_BUDGET seconds."""
    # A second Ctrl-C while stopping must not leave children behind.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    begun = time.monotonic()
    if announce:
        _say("stopping: simulator, gateway, materializer, NATS…")
    try:
        children.stop("seed", 0.2)
        for name, share in _STOP_SHARES.items():
            children.stop(name, share)
        server.stop(timeout=max(0.1, STOP_BUDGET - (time.monotonic() - begun) - 0.1))
    finally:
        signal.signal(signal.SIGINT, previous)
    if announce:
        _say(f"stopped in {time.monotonic() - begun:.1f} s")


def _say(message: str) -> None:
    """Print a status line; a closed terminal or pipe must not stop the stopping."""
    with contextlib.suppress(OSError, ValueError):
        console.print(message)
        sys.stderr.flush()
