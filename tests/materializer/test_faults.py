"""Infrastructure faults do not stop the materializer: a real full disk (a small tmpfs),
a failing batch retried with backoff, and exact aggregates once the fault clears."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from materializer import db, faults
from materializer.app import Materializer
from materializer.settings import Settings
from pulse_bi.contract import query_subject, reply_decoder
from pulse_bi.natsserver import free_port
from tests.conftest import publish_events
from tests.materializer.test_continuity import HOUR, orders, until
from tests.materializer.test_runtime import ask


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs of its own (root only), unmounted after the test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24M", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path, leave: int = 0) -> Path:
    """Write zeros until the volume is full but ``leave`` bytes; return the filler file."""
    filler = directory / f"filler-{uuid.uuid4().hex}"
    chunk = b"\0" * 4096
    with contextlib.suppress(OSError), open(filler, "wb") as file:
        while True:
            file.write(chunk)
            file.flush()
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@pytest.mark.parametrize("checkpoint_every_batch", [False, True], ids=["commit", "checkpoint"])
async def test_disk_full_is_reported_retried_and_resumed_exactly(
    materializer_settings: Settings,
    js: JetStreamContext,
    nc: NATS,
    small_disk: Path,
    checkpoint_every_batch: bool,
) -> None:
    settings = dataclasses.replace(
        materializer_settings,
        duckdb_path=small_disk / "pulse.duckdb",
        http_port=free_port(),
        fault_retry_max=0.5,
        # A checkpoint after every batch makes the checkpoint hit the full disk, after
        # which DuckDB invalidates the database and it must be opened again.
        checkpoint_interval=0.001 if checkpoint_every_batch else 300.0,
    )
    async with (
        Materializer(settings) as running,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as http,
    ):
        await running.wait_for_sequence(await publish_events(js, *orders(0, 50)))
        health = (await http.get("/health")).json()
        assert health["status"] == "degraded" and "low disk space" in health["reason"]

        # Leaving room for a few WAL appends lets a checkpoint (new 256 KB blocks) be
        # what hits the full disk first in the checkpoint case.
        filler = fill(small_disk, leave=96 * 1024 if checkpoint_every_batch else 0)
        published = 50
        while running.health()[0] != "unavailable":
            assert published < 5000, "the disk never filled up"
            last = await publish_events(js, *orders(published, 50))
            published += 50
            await asyncio.sleep(0.1)
        response = await http.get("/health")
        assert response.status_code == 503
        reason = response.json()["reason"]
        assert f"no space left on device at {small_disk}" in reason, reason
        if checkpoint_every_batch:
            # The checkpoint that met the full disk follows its batch's COMMIT: that
            # batch may have been the last one published.
            assert running.last_sequence <= last
        else:
            assert running.last_sequence < last
        # Reads go on from the file; while DuckDB has invalidated it (a failed
        # checkpoint) until it is opened again, a read says why it cannot answer.
        msg = await nc.request(query_subject("pipeline"), b"{}", timeout=10)
        reply = reply_decoder.decode(msg.data)
        if reply.error is None:
            assert reply.data["status"] == "unavailable"
        else:
            assert reply.error.code == "unavailable"
            assert "no space left on device" in reply.error.message

        filler.unlink()
        await running.wait_for_sequence(last, timeout=30)
        await until(lambda: running.health()[0] != "unavailable")
        rows = await ask(nc, "sales_by_hour", **HOUR)
        pipeline = await ask(nc, "pipeline")
        metrics = (await http.get("/metrics")).text

    assert (rows[0]["orders"], rows[0]["gross_revenue"]) == (published, f"{published}.00")
    assert pipeline["events_applied"] == published and pipeline["events_rejected"] == 0
    assert 'pulse_materializer_faults_total{kind="infrastructure"}' in metrics
    # What the process reported is what the file holds after a restart.
    conn = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        counts = conn.execute("SELECT count(*), count(DISTINCT order_id) FROM order_events")
        assert counts.fetchone() == (published, published)
        assert conn.execute("SELECT last_sequence FROM pipeline_state").fetchone() == (last,)
    finally:
        conn.close()


def test_a_failed_rollback_does_not_hide_the_real_cause(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "pulse.duckdb")
    try:
        db.rollback(conn)  # no transaction: "cannot rollback" is only logged
    finally:
        conn.close()


def test_the_cause_of_a_full_disk_is_named_with_its_path() -> None:
    message = (
        "TransactionContext Error: Failed to commit: "
        'Could not write file "/data/pulse.duckdb.wal": No space left on device'
    )
    assert faults.describe(duckdb.TransactionException(message)) == (
        "no space left on device at /data/pulse.duckdb.wal"
    )
    assert faults.is_infrastructure(duckdb.TransactionException(message))
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/x")
    assert faults.describe(enospc) == "no space left on device at /data/x"


async def test_a_damaged_file_is_retried_not_dead_lettered_and_a_stop_during_it_is_prompt(
    materializer_settings: Settings, js: JetStreamContext, nc: NATS
) -> None:
    """A table gone is the file's fault, not any event's (materializer/faults.py): the
    batch is retried with backoff, nothing is rejected, and it resumes once repaired."""
    settings = dataclasses.replace(materializer_settings, fault_retry_max=0.5)
    async with Materializer(settings) as running:
        await running.wait_for_sequence(await publish_events(js, *orders(0, 10)))
        assert running.store is not None
        # The table batches write the hourly sales to (m0012).
        running.store.conn.execute("ALTER TABLE aggregate_deltas RENAME TO aggregate_deltas_away")
        await publish_events(js, *orders(10, 5))
        await until(lambda: running.health()[0] == "unavailable")
        reason = running.health()[1]
        assert reason.startswith("ingest retrying: CatalogException"), reason
        assert "aggregate_deltas" in reason
        assert running.stats()["events_rejected"] == 0
        async with asyncio.timeout(10):
            await running.close()  # stops while retrying, commits nothing half-way
    conn = duckdb.connect(str(settings.duckdb_path))
    try:
        conn.execute("ALTER TABLE aggregate_deltas_away RENAME TO aggregate_deltas")
        # The view reads the pipeline state's rows of that table too (m0016).
        assert conn.execute("SELECT last_sequence FROM pipeline_state").fetchone() == (10,)
    finally:
        conn.close()

    async with Materializer(settings) as again:
        await again.wait_for_sequence(15)
        rows = await ask(nc, "sales_by_hour", **HOUR)
        assert again.health() == ("ok", "ok")
    assert (rows[0]["orders"], rows[0]["gross_revenue"]) == (15, "15.00")
