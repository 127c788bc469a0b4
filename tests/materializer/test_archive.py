"""Archive to Parquet, retention of raw rows, the stream's max_age, point-in-time restore
and rebuild: every path ends with the aggregates a plain replay of the stream gives."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import nats
import pyarrow.parquet as pq
import pytest

from materializer import archive, backup, rebuild, replay
from materializer.aggregates import pipeline
from materializer.app import Materializer
from materializer.settings import Settings, SettingsError
from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.streams import ensure_stream, stream_config
from tests.conftest import cloud_event, publish_events
from tests.materializer.lifecycle_kit import (
    answers,
    assert_same,
    cli,
    contents,
    prefill,
    reference,
    seen_answers,
)
from tests.materializer.test_backup import settings_for

# Several processes and replays each: more than the default 120 s on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Events are archived after a day; the tests run archive passes "two days later" (the
#: scheduled pass at start-up finds nothing that old, so it never races the test).
AFTER = 1.0


def later() -> datetime:
    return datetime.now(UTC) + timedelta(days=2)


def order(order_id: str, sku: str = "SKU-1", quantity: int = 2) -> dict[str, Any]:
    return cloud_event(
        "order.created",
        {
            "order_id": order_id,
            "customer_id": "C-1",
            "channel": "web",
            "total_amount": f"{quantity * 10}.00",
            "lines": [{"sku": sku, "quantity": quantity, "unit_price": "10.00"}],
        },
    )


def cancel(order_id: str) -> dict[str, Any]:
    return cloud_event("order.cancelled", {"order_id": order_id, "reason": "customer"})


def raw_rows(where: Path | Materializer) -> int:
    """Raw event rows of a stopped file, or of a running materializer's."""
    if isinstance(where, Materializer):
        assert where.store is not None
        return where.store.read(lambda cur: archive.raw_rows_between(cur, 0, 2**62))
    conn = duckdb.connect(str(where), read_only=True)
    try:
        return archive.raw_rows_between(conn, 0, 2**62)
    finally:
        conn.close()


async def test_archive_retention_and_rebuild_give_the_aggregates_of_a_plain_replay(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    settings = settings_for(
        nats_server, tmp_path, archive_after_days=AFTER, archive_interval=3600.0
    )
    first = await prefill(nats_server.url, 4_000, seed=11)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    old_orders = [order(f"OLD-{i}", sku=f"SKU-{i % 3}", quantity=i + 1) for i in range(5)]
    last = await publish_events(js, *old_orders)
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=60)
        assert running.lifecycle is not None
        await running.lifecycle.archive_once(later())
        assert running.stats()["archive_horizon"] == last
        assert raw_rows(running) == 0
        horizon = last
        # Cancellations of archived orders, and an archived event delivered again (no
        # Nats-Msg-Id: JetStream stores it), then new events.
        again = json.dumps(old_orders[0]).encode()
        await js.publish("pulse.events.orders.created", again)
        last = await publish_events(js, cancel("OLD-1"), cancel("OLD-3"), order("NEW-1"))
        await running.wait_for_sequence(last, timeout=60)
        stats = running.stats()
    assert stats["events_duplicate"] >= 1
    assert stats["archive_bytes"] > 0

    # Parquet: zstd, partitioned by type and day, with the stream sequence.
    files = sorted(settings.archive_path.glob("type=order.created/day=*/*.parquet"))
    assert files
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    sequences = pq.read_table(files[0]).column("sequence").to_pylist()
    assert sequences == sorted(sequences) and sequences[0] >= 1
    assert (settings.archive_path / "type=rejected").is_dir()

    plain = await reference(nats_server.url, tmp_path / "plain.duckdb")
    assert_same(contents(settings.duckdb_path, raw=False), contents(plain, raw=False))

    # A crash in the middle of an archive run: one run finished but not retired, one
    # with files and no marker. The next start retires the first, drops the second.
    start = horizon + 1
    messages: list[Any] = []
    async for chunk in replay.stream_messages(js, start, last):
        messages.extend(chunk)
    # The run's typed rows come from the stopped file, as the materializer writes them.
    conn = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        finished, _ = archive.write_run(settings.archive_path, messages[:2], conn)
    finally:
        conn.close()
    stray = settings.archive_path / "type=order.created" / "day=2026-01-01"
    stray.mkdir(parents=True)
    (stray / f"part-{last:020d}-{last:020d}.parquet").write_bytes(b"half")
    runs_before = len(archive.runs(settings.archive_path))
    async with Materializer(settings) as running:
        assert running.lifecycle is not None
        await running.lifecycle.archive_once(later())
        assert running.stats()["archive_horizon"] == last
    assert not list(stray.iterdir())
    assert len(archive.runs(settings.archive_path)) == runs_before + 1
    assert archive.runs(settings.archive_path)[-2] == finished
    assert_same(contents(settings.duckdb_path, raw=False), contents(plain, raw=False))

    rebuilt = tmp_path / "rebuilt.duckdb"
    done = await asyncio.to_thread(
        cli,
        "rebuild",
        "--no-swap",
        "--output",
        str(rebuilt),
        env={
            "NATS_URL": nats_server.url,
            "DUCKDB_PATH": str(settings.duckdb_path),
            "ARCHIVE_PATH": str(settings.archive_path),
        },
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["from_archive"] == last and report["from_stream"] == 0
    assert report["set_based"] is True
    # The set-based rebuild, a message-by-message one and the live file agree on every
    # table, every named query and what the seen index answers.
    each_path = tmp_path / "each.duckdb"
    each = await rebuild.rebuild(each_path, settings.archive_path, js, set_based=False)
    assert not each.set_based and each.from_archive == last
    everything: list[Any] = []
    async for chunk in replay.stream_messages(js, 1, last):
        everything.extend(chunk)
    for path in (rebuilt, each_path):
        assert_same(contents(path), contents(settings.duckdb_path))
        assert answers(path) == answers(settings.duckdb_path)
        assert seen_answers(path, everything) == seen_answers(settings.duckdb_path, everything)
    await nc.drain()
    assert first < last


async def test_rebuild_runs_beside_a_live_materializer_which_then_swaps_the_files(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    settings = settings_for(nats_server, tmp_path, archive_after_days=AFTER)
    last = await prefill(nats_server.url, 2_000, seed=12)
    env = {
        "NATS_URL": nats_server.url,
        "DUCKDB_PATH": str(settings.duckdb_path),
        "ARCHIVE_PATH": str(settings.archive_path),
    }
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=60)
        assert running.lifecycle is not None
        await running.lifecycle.archive_once(later())
        # Half archived, half in the stream only; events keep coming during the rebuild.
        more = await prefill(nats_server.url, 1_000, seed=13)
        await running.wait_for_sequence(more, timeout=60)
        feeding = asyncio.create_task(prefill(nats_server.url, 1_000, seed=14))
        swapped = await asyncio.to_thread(cli, "rebuild", env=env)
        assert swapped.returncode == 0, swapped.stderr
        report = json.loads(swapped.stdout.splitlines()[0])
        assert report["from_archive"] == last and report["from_stream"] >= more - last
        assert "swapped:" in swapped.stdout and "ingest paused" in swapped.stdout
        final = await feeding
        await running.wait_for_sequence(final, timeout=60)
        assert running.health()[0] == "ok"
        assert running.stats()["archive_horizon"] == last
        # /stats and /health show the swapped-in file's counters, not the replaced one's.
        assert running.store is not None
        on_file = running.store.read(pipeline.state)
        shown = running.stats()
        for key in ("events_applied", "events_rejected", "events_duplicate", "batches"):
            assert shown[key] == on_file[key], key
    assert list(tmp_path.glob("live.duckdb.replaced-*"))
    plain = await reference(nats_server.url, tmp_path / "plain.duckdb")
    assert_same(contents(settings.duckdb_path, raw=False), contents(plain, raw=False))

    # With the materializer stopped, the command swaps the files itself.
    before = contents(settings.duckdb_path)
    again = cli("rebuild", env=env)
    assert again.returncode == 0, again.stderr
    assert_same(contents(settings.duckdb_path), before)
    async with Materializer(settings) as running:
        assert running.stats()["last_sequence"] == final
        assert running.health()[0] == "ok"


async def test_point_in_time_restore_equals_a_replay_of_the_first_events(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    settings = settings_for(nats_server, tmp_path, archive_after_days=AFTER)
    early = await prefill(nats_server.url, 1_500, seed=21)
    async with Materializer(settings) as running:
        await running.wait_for_sequence(early, timeout=60)
        assert running.lifecycle is not None
        taken = await running.lifecycle.take_backup(settings.backup_path)
        middle = await prefill(nats_server.url, 1_500, seed=22)
        await running.wait_for_sequence(middle, timeout=60)
        await running.lifecycle.archive_once(later())  # part of the replay comes from the archive
        await asyncio.sleep(1.1)
        cut = datetime.now(UTC)
        await asyncio.sleep(1.1)
        last = await prefill(nats_server.url, 1_500, seed=23)
        await running.wait_for_sequence(last, timeout=60)
    env = {"NATS_URL": nats_server.url, "ARCHIVE_PATH": str(settings.archive_path)}
    target = (early + middle) // 2 + 7

    async def audit(option: str, value: str, upto: int) -> Path:
        """``restore BACKUP option value`` into a file of its own: a replay to ``upto``."""
        output = tmp_path / f"audit{option}.duckdb"
        done = cli("restore", str(taken.path), option, value, "--output", str(output), env=env)
        assert done.returncode == 0, done.stderr
        expected = await reference(nats_server.url, tmp_path / f"replay{option}", upto=upto)
        assert_same(contents(output, raw=False), contents(expected, raw=False))
        return output

    by_sequence = await audit("--to-sequence", str(target), target)
    await audit("--to-time", cut.isoformat(), middle)

    from_empty = tmp_path / "audit-empty.duckdb"
    done = cli("restore", "--to-sequence", str(target), "--output", str(from_empty), env=env)
    assert done.returncode == 0, done.stderr
    assert_same(contents(from_empty, raw=False), contents(by_sequence, raw=False))

    too_early = cli(
        "restore", str(taken.path), "--to-sequence", "3", "--output", str(tmp_path / "x"), env=env
    )
    assert too_early.returncode == 2
    assert "restore an older backup" in too_early.stderr
    for bad in ("yesterday", "", "2026-13-01T00:00:00Z"):
        refused = cli("restore", str(taken.path), "--to-time", bad, "--output", "y", env=env)
        assert refused.returncode == 2 and "ISO 8601" in refused.stderr, bad
    nothing = cli("restore", "--output", str(tmp_path / "z"), env=env)
    assert nothing.returncode == 2
    assert backup.verify(taken.path)  # restoring never changes the backup


def test_settings_refuse_stream_retention_that_outruns_the_archive() -> None:
    with pytest.raises(SettingsError, match="before they are archived"):
        Settings.from_env({"STREAM_MAX_AGE_DAYS": "30"})
    with pytest.raises(SettingsError, match="before they are archived"):
        Settings.from_env({"STREAM_MAX_AGE_DAYS": "30.5", "ARCHIVE_AFTER_DAYS": "30"})
    ok = Settings.from_env({"STREAM_MAX_AGE_DAYS": "31", "ARCHIVE_AFTER_DAYS": "30"})
    assert ok.stream_max_age_days == 31
    for name, value in (
        ("ARCHIVE_AFTER_DAYS", "-1"),
        ("ARCHIVE_AFTER_DAYS", "nan"),
        ("ARCHIVE_AFTER_DAYS", "1e400"),
        ("ARCHIVE_AFTER_DAYS", "99999999"),
        ("STREAM_MAX_AGE_DAYS", "abc"),
        ("ARCHIVE_INTERVAL", "0"),
        ("BACKUP_INTERVAL", "-5"),
        ("BACKUP_KEEP_DAILY", "1.5"),
        ("BACKUP_KEEP_WEEKLY", "-1"),
    ):
        with pytest.raises(SettingsError):
            Settings.from_env({name: value})
    defaults = Settings.from_env({"DATA_PATH": "/srv/pulse"})
    assert defaults.backup_path == Path("/srv/pulse/backups")
    assert defaults.archive_path == Path("/srv/pulse/archive")
    assert defaults.archive_after_days == 0 and defaults.stream_max_age_days == 0


async def test_the_stream_gets_max_age_and_health_warns_before_it_deletes_unarchived_events(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    created = settings_for(nats_server, tmp_path, archive_after_days=30.0, stream_max_age_days=31.0)
    async with Materializer(created) as running:
        assert running.js is not None
        info = await running.js.stream_info("PULSE_EVENTS")
        assert info.config.max_age == 31 * 86400
        assert running.lifecycle is not None
        assert await running.lifecycle.archiving.check_retention() is None
        await running.js.delete_stream("PULSE_EVENTS")

    # Someone created the stream with an 11-hour max_age, and the archive is off.
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(stream_config(max_age=11 * 3600))
    last = await publish_events(js, order("O-1"), order("O-2"))
    settings = settings_for(nats_server, tmp_path, duckdb_path=tmp_path / "other.duckdb")
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=30)
        assert running.lifecycle is not None
        running.lifecycle.archiving.retention_problem = (
            await running.lifecycle.archiving.check_retention()
        )
        status, reason = running.health()
    assert status == "degraded"
    assert "before the archive takes them" in reason
    assert "deletes sequence 1 in 1" in reason  # hours away, said now
    await nc.drain()


async def test_the_archive_refuses_to_retire_rows_the_stream_no_longer_holds(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    settings = settings_for(nats_server, tmp_path, archive_after_days=AFTER)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js)
    last = await publish_events(js, order("A-1"), order("A-2"), order("A-3"))
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=30)
        await js.purge_stream("PULSE_EVENTS")  # retention outran the archive
        assert running.lifecycle is not None
        with pytest.raises(archive.ArchiveError, match="no longer holds sequences 1-3"):
            await running.lifecycle.archive_once(later())
        running.lifecycle.archiving.error = "the stream no longer holds sequences 1-3"
        status, reason = running.health()
    assert status == "degraded" and "archive failing" in reason
    assert raw_rows(settings.duckdb_path) == 6  # three orders and their lines, kept
    assert archive.runs(settings.archive_path) == []
    await nc.drain()


async def test_kill_9_while_archiving_then_restart_ends_like_a_plain_replay(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last = await prefill(nats_server.url, 30_000, seed=31)
    live = tmp_path / "live.duckdb"
    root = tmp_path / "archive"
    port = free_port()
    env = {
        "NATS_URL": nats_server.url,
        "DUCKDB_PATH": str(live),
        "ARCHIVE_PATH": str(root),
        # Everything applied is old enough; a run every second.
        "ARCHIVE_AFTER_DAYS": "0.000000001",
        "ARCHIVE_INTERVAL": "1",
        "BATCH_MAX_EVENTS": "2000",
        "MATERIALIZER_HTTP_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    for _ in range(2):
        process = subprocess.Popen(
            [sys.executable, "-m", "pulse_bi", "materializer"], env={**os.environ, **env}
        )
        try:
            async with asyncio.timeout(120):
                # Killed as soon as an archive run has started writing Parquet.
                seen = len(list(root.glob("type=*/day=*/*"))) if root.exists() else 0
                while not root.exists() or len(list(root.glob("type=*/day=*/*"))) <= seen:
                    await asyncio.sleep(0.005)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    process = subprocess.Popen(
        [sys.executable, "-m", "pulse_bi", "materializer"], env={**os.environ, **env}
    )
    try:
        async with asyncio.timeout(180), httpx.AsyncClient() as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    stats = (await http.get(f"http://127.0.0.1:{port}/stats")).json()
                    if stats["last_sequence"] == last and stats["archive_horizon"] == last:
                        break
                await asyncio.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert raw_rows(live) == 0
    plain = await reference(nats_server.url, tmp_path / "plain.duckdb")
    assert_same(contents(live, raw=False), contents(plain, raw=False))
    # Every message archived once: the runs cover 1..last without overlap.
    covered = [(r.first, r.last) for r in archive.runs(root)]
    assert covered[0][0] == 1 and covered[-1][1] == last
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(covered))
    archived = sum(len(chunk) for chunk in archive.messages(root))
    assert archived == last


async def test_the_next_batch_already_reads_retired_orders_from_the_archive(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    settings = settings_for(nats_server, tmp_path, archive_after_days=AFTER)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js)
    last = await publish_events(js, order("R-1"), order("R-2"))
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=30)
        assert running.lifecycle is not None and running.ingestor is not None
        store = running.store
        assert store is not None and store.archive is not None
        retiring = asyncio.create_task(running.lifecycle.archiving.retire(last))
        await asyncio.sleep(0)  # its step is on the writer thread's queue now
        # The step queued right after it (where the next batch would be applied) must
        # find the orders whose raw rows just left in the archive.
        horizon = await running.ingestor.between_batches(lambda: store.archive.horizon)  # type: ignore[union-attr]
        await retiring
    assert horizon == last
    await nc.drain()
