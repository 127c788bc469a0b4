"""``pulse-bi publish``: one hand-written event, checked, published, and its fate reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse_bi.cli import main
from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.publish import MAX_EVENT_BYTES, subject_of


def event(**data_changes: object) -> dict[str, object]:
    """A valid order.created CloudEvent, with changes to its data."""
    data = {
        "order_id": "SO-HAND-1",
        "customer_id": "C-0001",
        "channel": "web",
        "total_amount": "12.50",
        "lines": [{"sku": "BEV-0001", "quantity": 1, "unit_price": "12.50"}],
        **data_changes,
    }
    return {
        "specversion": "1.0",
        "id": f"hand-{data['order_id']}",
        "source": "manual",
        "type": "order.created",
        "time": "2026-11-30T10:00:00Z",
        "data": data,
    }


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["publish", *args], input=stdin, env=env)
    return result.exit_code, result.output


def test_dry_run_accepts_a_valid_event_from_stdin() -> None:
    code, output = run("--dry-run", stdin=json.dumps(event()))
    assert code == 0, output
    assert (
        "valid order.created event hand-SO-HAND-1 (subject pulse.events.orders.created)" in output
    )


def test_dry_run_gives_the_materializers_reason_for_an_invalid_event(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    bad = event(lines=[{"sku": "BEV-0001", "quantity": 1, "unit_price": "12.505"}])
    path.write_text(json.dumps(bad))
    code, output = run("--dry-run", str(path))
    assert code == 1
    assert "invalid: data.lines[0].unit_price: more than 2 decimals" in output


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "no event given"),
        ("   \n", "no event given"),
        ("x" * (MAX_EVENT_BYTES + 1), "larger than"),
    ],
)
def test_empty_or_huge_input_is_a_usage_error(stdin: str, message: str) -> None:
    code, output = run("--dry-run", stdin=stdin)
    assert code == 2
    assert message in output


@pytest.mark.parametrize(
    "stdin",
    ["[1", "[]", "null", "1e999999", '"\\ud800"', "[" * 10_000, '{"type": 7}', '{"type": "a.b"}'],
)
def test_any_document_gets_a_clear_verdict_never_a_crash(stdin: str) -> None:
    code, output = run("--dry-run", stdin=stdin)
    assert code == 1, output
    assert output.startswith("invalid: ")


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=300) | st.text(min_size=1, max_size=300).map(str.encode))
def test_subject_and_verdict_for_arbitrary_bytes(payload: bytes) -> None:
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        document = None
    subject = subject_of(document)
    assert subject.startswith("pulse.events.") and ">" not in subject and "*" not in subject
    result = CliRunner().invoke(main, ["publish", "--dry-run", "-"], input=payload)
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture
def materializer(nats_server: LocalNatsServer, tmp_path: Path) -> Iterator[LocalNatsServer]:
    """A materializer process on a fresh DuckDB file, reading nats_server."""
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "DATA_PATH": str(tmp_path / "data"),
        "MATERIALIZER_HTTP_PORT": str(free_port()),
    }
    log = (tmp_path / "materializer.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pulse_bi", "materializer"], env=env, stdout=log, stderr=log
    )
    try:
        yield nats_server
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.slow
def test_a_valid_event_is_published_and_reported_applied(
    materializer: LocalNatsServer, tmp_path: Path
) -> None:
    path = tmp_path / "order.json"
    path.write_text(json.dumps(event()))
    code, output = run(str(path), "--wait", "30", env={"NATS_URL": materializer.url})
    assert code == 0, output
    assert "published as sequence 1: applied by the materializer" in output
    again, output = run(str(path), "--wait", "30", env={"NATS_URL": materializer.url})
    assert again == 0
    assert "dropped by JetStream" in output


@pytest.mark.slow
def test_an_invalid_event_is_not_published_unless_forced_then_reported_rejected(
    materializer: LocalNatsServer,
) -> None:
    bad = json.dumps({**event(), "time": "2026-11-30T10:00:00"})  # no timezone
    env = {"NATS_URL": materializer.url}
    code, output = run("--wait", "30", stdin=bad, env=env)
    assert code == 1
    assert "invalid: time has no timezone" in output
    assert "published" not in output
    forced, output = run("--force", "--wait", "30", stdin=bad, env=env)
    assert forced == 1
    assert "published as sequence 1: rejected: time has no timezone" in output


def test_no_nats_is_a_clear_error() -> None:
    code, output = run("--nats-url", f"nats://127.0.0.1:{free_port()}", stdin=json.dumps(event()))
    assert code == 1
    assert "cannot publish to NATS at nats://127.0.0.1:" in output
