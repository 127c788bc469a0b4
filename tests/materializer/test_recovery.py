"""Exactly once across crashes: kill -9 mid-ingest, nats-server restarts, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from bench.paging import Paging
from materializer.app import Materializer
from materializer.settings import Settings
from pulse_bi.contract import query_subject, reply_decoder
from pulse_bi.natsserver import LocalNatsServer, free_port
from tests.materializer.lifecycle_kit import publish_scenario

pytestmark = pytest.mark.slow

WINDOW = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}


async def fetch_all(url: str, as_of: str) -> dict[str, Any]:
    """The materializer's answers in the shapes of the simulator's expected aggregates."""
    nc = await nats.connect(url)

    async def ask(name: str, **params: Any) -> Any:
        paging = Paging(params)
        while paging.more:
            msg = await nc.request(
                query_subject(name), json.dumps(paging.page).encode(), timeout=30
            )
            reply = reply_decoder.decode(msg.data)
            assert reply.error is None, reply.error
            paging.add(reply.data, reply.next_offset)
        return paging.result

    try:
        return {
            "sales_by_hour": await ask("sales_by_hour", **WINDOW),
            "stock_levels": await ask("stock_levels"),
            "low_stock": await ask("low_stock"),
            "ar_aging": await ask("ar_aging", as_of=as_of),
            "overdue_invoices": await ask("overdue_invoices", as_of=as_of),
            "pipeline": await ask("pipeline"),
        }
    finally:
        await nc.drain()


def assert_matches_expected(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for name in ("sales_by_hour", "stock_levels", "low_stock", "overdue_invoices"):
        assert actual[name] == expected[name], name
    assert actual["ar_aging"] == expected["ar_aging"]
    counts = expected["counts"]
    assert actual["pipeline"]["events_applied"] == counts["applied"]
    assert actual["pipeline"]["events_rejected"] == counts["rejected"]


def spawn_materializer(url: str, duckdb_path: Path, http_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": url,
        "DUCKDB_PATH": str(duckdb_path),
        "MATERIALIZER_HTTP_PORT": str(http_port),
        "BATCH_MAX_EVENTS": "2000",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "pulse_bi", "materializer"], env=env)


async def applied_sequence(http_port: int) -> int:
    async with httpx.AsyncClient() as client:
        try:
            response = await client.get(f"http://127.0.0.1:{http_port}/stats", timeout=2)
        except httpx.HTTPError:
            return -1
        return int(response.json()["last_sequence"])


async def test_kill_9_in_the_middle_of_a_large_ingest_then_restart_gives_the_expected_tables(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last, scenario = await publish_scenario(nats_server.url, 60_000, seed=42)
    as_of = datetime.now(UTC).date().isoformat()
    port = free_port()
    duckdb_path = tmp_path / "crash.duckdb"

    for kill_at in (last // 4, last // 2):
        process = spawn_materializer(nats_server.url, duckdb_path, port)
        try:
            async with asyncio.timeout(120):
                while await applied_sequence(port) < kill_at:
                    await asyncio.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert process.returncode == -signal.SIGKILL

    process = spawn_materializer(nats_server.url, duckdb_path, port)
    try:
        async with asyncio.timeout(120):
            while await applied_sequence(port) < last:
                await asyncio.sleep(0.1)
        actual = await fetch_all(nats_server.url, as_of)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert_matches_expected(actual, scenario.expected(datetime.fromisoformat(as_of).date()))


async def test_a_nats_server_restart_during_ingest_loses_nothing(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last, scenario = await publish_scenario(nats_server.url, 40_000, seed=9)
    as_of = datetime.now(UTC).date().isoformat()
    settings = Settings(
        nats_url=nats_server.url,
        duckdb_path=tmp_path / "restart.duckdb",
        http_port=0,
        batch_max_events=1000,
        heartbeat_interval=0.5,
    )
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last // 3, timeout=60)
        nats_server.restart()
        await running.wait_for_sequence(last, timeout=90)
        actual = await fetch_all(nats_server.url, as_of)

    assert_matches_expected(actual, scenario.expected(datetime.fromisoformat(as_of).date()))


async def test_sigterm_finishes_the_batch_commits_and_exits_zero(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last, _ = await publish_scenario(nats_server.url, 20_000, seed=5)
    port = free_port()
    duckdb_path = tmp_path / "term.duckdb"
    process = spawn_materializer(nats_server.url, duckdb_path, port)
    async with asyncio.timeout(60):
        while await applied_sequence(port) < 1:
            await asyncio.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    # Whatever was committed is intact, and a restart completes the rest exactly once.
    async with Materializer(
        Settings(nats_url=nats_server.url, duckdb_path=duckdb_path, http_port=0)
    ) as running:
        await running.wait_for_sequence(last, timeout=60)
        stats = running.stats()
    assert stats["last_sequence"] == last
