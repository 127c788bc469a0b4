"""``pulse-bi simulate`` through click's CliRunner against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime
from pathlib import Path

import click
import nats
import pytest
from click.testing import CliRunner

from pulse_bi.contract import STREAM_NAME
from pulse_bi.natsserver import LocalNatsServer
from pulse_bi.simulator import generate
from pulse_bi.simulator.cli import simulate_command

END = "2026-11-25T12:00:00Z"


def stream_state(url: str) -> tuple[int, float]:
    """(messages, duplicate window in seconds) of the events stream."""

    async def read() -> tuple[int, float]:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(STREAM_NAME)
            return int(info.state.messages), float(info.config.duplicate_window or 0)
        finally:
            await nc.close()

    return asyncio.run(read())


def test_help_documents_every_option_with_its_environment_variable() -> None:
    result = CliRunner().invoke(simulate_command, ["--help"])
    assert result.exit_code == 0, result.output
    for param in simulate_command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.help, param.name
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
        assert any(e.startswith("PULSE_SIM_") for e in envvars), param.name
        assert param.opts[0] in result.output
    nats_url = next(p for p in simulate_command.params if p.name == "nats_url")
    assert "NATS_URL" in list(nats_url.envvar or [])


def test_count_run_publishes_and_writes_the_expected_aggregates(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    expected_path = tmp_path / "expected.json"
    args = ["--count", "800", "--seed", "4", "--end", END, "--expected", str(expected_path)]
    args += ["--duplicates", "0.1", "--bad", "0.05", "--as-of", "2026-11-26"]
    result = CliRunner().invoke(simulate_command, args, env={"NATS_URL": nats_server.url})
    assert result.exit_code == 0, result.output
    assert "published 800 messages" in result.output

    written = json.loads(expected_path.read_text())
    assert set(written) >= {
        "sales_by_hour", "sales_by_hour_by_channel", "stock_levels", "low_stock",
        "ar_aging", "overdue_invoices", "top_products", "counts",
    }  # fmt: skip
    assert written["ar_aging"]["as_of"] == "2026-11-26"
    counts = written["counts"]
    assert counts["published"] == 800
    assert stream_state(nats_server.url)[0] == counts["in_stream"] < 800
    assert counts["rejected"] > 0 and counts["duplicates"] > 0
    assert written["sales_by_hour"] and written["stock_levels"]


def test_a_run_puts_back_the_signal_handlers_it_found(nats_server: LocalNatsServer) -> None:
    """Ctrl-C ends a run through the loop's handlers; afterwards the caller's own
    handlers are in place again, not Python's default."""

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("no signal is sent in this test")

    found = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = ["--count", "20", "--seed", "4", "--end", END]
        result = CliRunner().invoke(simulate_command, args, env={"NATS_URL": nats_server.url})
        assert result.exit_code == 0, result.output
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, handler in found.items():
            signal.signal(sig, handler)


def test_cli_run_matches_the_library_scenario_for_the_same_seed_and_end(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    path = tmp_path / "expected.json"
    args = ["--count", "600", "--seed", "9", "--end", END, "--expected", str(path), "--quiet"]
    result = CliRunner().invoke(simulate_command, args, env={"NATS_URL": nats_server.url})
    assert result.exit_code == 0, result.output
    assert result.output == ""  # --quiet
    scenario = generate(
        9, 600, out_of_order=0.02, duplicates=0.01, bad=0.001, end=datetime.fromisoformat(END)
    )
    assert json.loads(path.read_text())["sales_by_hour"] == scenario.expected()["sales_by_hour"]


def test_the_same_seed_twice_is_dropped_by_jetstream_the_second_time(
    nats_server: LocalNatsServer,
) -> None:
    args = ["--count", "300", "--seed", "5", "--end", END, "--duplicates", "0", "--bad", "0"]
    env = {"NATS_URL": nats_server.url}
    first = CliRunner().invoke(simulate_command, args, env=env)
    second = CliRunner().invoke(simulate_command, args, env=env)
    assert first.exit_code == second.exit_code == 0, second.output
    assert "300 stored, 0 dropped" in first.output
    assert "0 stored, 300 dropped" in second.output
    assert stream_state(nats_server.url)[0] == 300


def test_options_come_from_the_environment(nats_server: LocalNatsServer) -> None:
    env = {
        "PULSE_SIM_NATS_URL": nats_server.url,
        "PULSE_SIM_COUNT": "120",
        "PULSE_SIM_DUPLICATE_WINDOW": "45",
        "PULSE_SIM_QUIET": "1",
    }
    result = CliRunner().invoke(simulate_command, [], env=env)
    assert result.exit_code == 0, result.output
    assert result.output == ""
    messages, window = stream_state(nats_server.url)
    assert 110 <= messages <= 120
    assert window == 45


def test_rate_with_duration_stops_on_time(nats_server: LocalNatsServer) -> None:
    args = ["--rate", "100", "--duration", "1", "--seed", "3"]
    result = CliRunner().invoke(simulate_command, args, env={"NATS_URL": nats_server.url})
    assert result.exit_code == 0, result.output
    messages, _ = stream_state(nats_server.url)
    # Paced from the first message, sent at 0 s: the 100th is the last one due before 1 s,
    # however late the process runs (the count follows the schedule, not the clock).
    assert result.output.startswith("published 100 messages in ")
    assert 0 < messages <= 100  # re-sent duplicates among them are dropped by JetStream


@pytest.mark.parametrize("duration", ["1e-9", "0.001"])
def test_a_duration_shorter_than_one_interval_sends_the_first_message_only(
    nats_server: LocalNatsServer, duration: str
) -> None:
    args = ["--rate", "100", "--duration", duration, "--seed", "3"]
    result = CliRunner().invoke(simulate_command, args, env={"NATS_URL": nats_server.url})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("published 1 messages in ")


@pytest.mark.parametrize("duration", ["0", "-1", "nan", "inf", "soon"])
def test_a_duration_that_is_no_time_is_a_usage_error(duration: str) -> None:
    # nan used to pass click's range check and then never end the run.
    args = ["--rate", "100", "--duration", duration, "--nats-url", "nats://127.0.0.1:1"]
    result = CliRunner().invoke(simulate_command, args)
    assert result.exit_code == 2, result.output
    assert "--duration" in result.output


def test_unreachable_server_is_a_clean_cli_error() -> None:
    result = CliRunner().invoke(
        simulate_command, ["--count", "5", "--nats-url", "nats://127.0.0.1:1"]
    )
    assert result.exit_code == 1
    assert "cannot connect to NATS at nats://127.0.0.1:1" in result.output
    assert "Traceback" not in result.output


def test_duplicates_and_bad_over_one_are_a_usage_error() -> None:
    result = CliRunner().invoke(simulate_command, ["--duplicates", "0.6", "--bad", "0.6"])
    assert result.exit_code == 2
    assert "must not exceed 1" in result.output


def test_end_without_timezone_is_refused() -> None:
    result = CliRunner().invoke(simulate_command, ["--end", "2026-11-25T12:00:00"])
    assert result.exit_code == 2
    assert "timezone" in result.output


def test_docs_list_every_option_and_environment_variable() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "SIMULATOR.md").read_text()
    for param in simulate_command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert f"`{param.opts[0]}" in docs, param.opts[0]
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
        for name in envvars:
            assert f"`{name}`" in docs, name
