"""``pulse-bi dev`` behaves: ports checked first, history seeded once, Ctrl-C in order."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from click.testing import CliRunner
from nats.js.errors import NotFoundError

from pulse_bi.cli import main
from pulse_bi.contract import STREAM_NAME
from pulse_bi.dev import SEED_MARKER
from pulse_bi.natsserver import LocalNatsServer, free_port

HISTORY = """{ pipeline { lastSequence streamLastSequence eventsApplied }
  salesByHour(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z") { hour orders netRevenue }
  arAging { totalOutstanding } }"""


def dev(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """``pulse-bi dev`` on free ports (unless given) with its output captured."""
    ports = {"--port": free_port(), "--nats-port": free_port(), "--materializer-port": free_port()}
    given = dict(zip(args[::2], args[1::2], strict=True))
    command = [sys.executable, "-m", "pulse_bi", "dev", "--data-path", str(tmp_path / "data")]
    for flag, port in ports.items():
        command += [flag, given.pop(flag, str(port))]
    for flag, value in given.items():
        command += [flag, value]
    # A file, not a pipe: the children share it and must never block on a full pipe.
    log = (tmp_path / f"dev-{time.monotonic_ns()}.log").open("w+")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env}
    )
    process.log = log  # type: ignore[attr-defined]
    return process


def finish(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """Wait for the process; everything it and its children printed."""
    process.wait(timeout=timeout)
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    return str(log.read())


def port_of(process: subprocess.Popen[str]) -> int:
    """The gateway port a dev process was started with."""
    args = list(process.args)  # type: ignore[arg-type]
    return int(args[args.index("--port") + 1])


def graphql(port: int, query: str) -> dict[str, Any] | None:
    """The data of one query, or None while the stack is not answering yet."""
    try:
        reply = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=5)
        return reply.json().get("data")
    except (httpx.HTTPError, ValueError):
        return None


def wait_applied(process: subprocess.Popen[str], count: int) -> dict[str, Any]:
    """Wait until the stream, at least ``count`` long, is applied; the history then."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, finish(process)
        data = graphql(port_of(process), HISTORY)
        pipeline = data["pipeline"] if data else {}
        if pipeline and pipeline["lastSequence"] == pipeline["streamLastSequence"] >= count:
            return data  # type: ignore[return-value]
        time.sleep(0.3)
    raise AssertionError("the seeded history was not applied in 90 s")


def interrupt(process: subprocess.Popen[str]) -> tuple[float, str]:
    """Ctrl-C; seconds until the process has exited, and its output."""
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    took = time.monotonic() - started
    return took, finish(process)


async def stream_messages(url: str) -> int | None:
    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info(STREAM_NAME)).state.messages)
    except NotFoundError:
        return None
    finally:
        await nc.close()


def test_a_bad_port_setting_names_its_variable() -> None:
    result = CliRunner().invoke(main, ["dev"], env={"GATEWAY_PORT": "abc"})
    assert result.exit_code == 2
    assert "GATEWAY_PORT='abc'" in result.output
    flag = CliRunner().invoke(main, ["dev", "--nats-port", "70000"])
    assert "--nats-port='70000'" in flag.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PULSE_DEV_RATE", "nan"),
        ("PULSE_DEV_RATE", "inf"),
        ("PULSE_DEV_RATE", "-1"),
        ("PULSE_DEV_SEED_EVENTS", "1.5"),
        ("PULSE_DEV_NATS_PORT", "0"),
        ("MATERIALIZER_HTTP_PORT", "99999999999999999999"),
        ("GATEWAY_PORT", "\uff18\uff10\uff10\uff14"),  # full-width digits of 8004
        ("GATEWAY_PORT", " "),
    ],
)
def test_every_bad_dev_setting_names_its_variable(variable: str, value: str) -> None:
    # Every case must fail before anything starts: a valid value would start a stack.
    result = CliRunner().invoke(main, ["dev"], env={variable: value})
    assert result.exit_code == 2, result.output
    assert f"{variable}={value!r}" in result.output


def test_the_gateway_names_its_port_variable_too() -> None:
    result = CliRunner().invoke(main, ["gateway", "serve"], env={"GATEWAY_PORT": "abc"})
    assert result.exit_code == 2
    assert "GATEWAY_PORT='abc'" in result.output


def test_two_settings_on_one_port_are_refused(tmp_path: Path) -> None:
    port = str(free_port())
    result = CliRunner().invoke(
        main, ["dev", "--data-path", str(tmp_path), "--port", port, "--materializer-port", port]
    )
    assert result.exit_code == 2
    assert f"both set to port {port}" in result.output


@pytest.mark.slow
def test_a_taken_gateway_port_fails_fast_naming_it_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = dev(tmp_path, "--port", str(port))
        output = finish(process, 20)
    assert process.returncode == 1
    assert f"port {port} (gateway) is already in use by pid {os.getpid()}" in output
    assert "GATEWAY_PORT" in output and "--port" in output
    assert "running" not in output
    assert not (tmp_path / "data").exists()  # no NATS store, nothing seeded


@pytest.mark.slow
def test_a_taken_nats_port_publishes_nothing_into_that_server(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    process = dev(tmp_path, "--nats-port", str(nats_server.port), "--seed-events", "50")
    output = finish(process, 20)
    assert process.returncode == 1
    assert f"port {nats_server.port} (NATS) is already in use by pid" in output
    assert "nats-server" in output
    assert "PULSE_DEV_NATS_PORT" in output
    assert asyncio.run(stream_messages(nats_server.url)) is None


@pytest.mark.slow
def test_restart_keeps_history_unchanged_and_ctrl_c_stops_in_order_within_3_s(
    tmp_path: Path,
) -> None:
    first = dev(tmp_path, "--seed-events", "400", "--rate", "0")
    try:
        before = wait_applied(first, 300)  # fewer: JetStream drops some duplicates
    finally:
        took, output = interrupt(first)
    assert first.returncode == 0, output
    assert "seeding 400 demo events" in output
    assert "stopping: simulator, gateway, materializer, NATS" in output
    assert "stopped in" in output
    # The bound is 3 s; the slack covers a loaded CI machine.
    assert took < 6, f"Ctrl-C took {took:.1f} s"
    assert (tmp_path / "data" / SEED_MARKER).exists()

    second = dev(tmp_path, "--seed-events", "400", "--rate", "0")
    try:
        after = wait_applied(second, 300)
        time.sleep(1)  # anything published by the restart would be applied by now
        again = graphql(port_of(second), HISTORY)
    finally:
        _, output = interrupt(second)
    assert "seeding" not in output
    assert after == before
    assert again == before
