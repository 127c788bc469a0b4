"""Data lifecycle figures: backup time, size and ingest pause; rebuild rate from the
Parquet archive against the stream replay rate; disk after a compressed year.

Run: ``.venv/bin/python -m bench.bench_lifecycle [--part backup|rebuild|year]``.

- ``backup``: pre-fills ``--events``, lets a materializer catch up, then publishes at
  ``--rate`` events/s while taking ``--backups`` online backups over NATS. The ingest
  pause is the longest gap between two change notices (one per committed batch) while
  a backup runs, against the longest gap with no backup running in the same run.
- ``rebuild``: ``--events`` ingested and archived, then new files built: by the
  set-based rebuild from the archive's typed rows (``materializer/rebuild.py``), by the
  message-by-message rebuild from the archive (what archives of format 1 get), and by a
  materializer replaying the stream (before and after: the faster is the baseline).
- ``year``: a year at 20 events/s compressed ``--scale`` times (each simulated day holds
  20 * 86,400 / scale events): day by day, ingest, archive what is older than
  ARCHIVE_AFTER_DAYS, and drop from the stream what is older than STREAM_MAX_AGE_DAYS;
  disk of DuckDB + archive + stream against the same year kept whole in both.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats

from bench.bench_ingest import machine, prefill
from materializer import archive, rebuild, replay
from materializer.app import Materializer
from materializer.backup_service import BACKUP_SUBJECT, BackupReply
from materializer.settings import Settings
from pulse_bi.contract import CHANGES_SUBJECT, STREAM_NAME
from pulse_bi.natsserver import LocalNatsServer
from pulse_bi.simulator import generate, publish
from pulse_bi.streams import ensure_stream


def du(path: Path) -> int:
    """Bytes allocated under ``path`` (a file or a directory)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_blocks * 512
            except FileNotFoundError:
                continue
    return total


async def bench_backup(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server = LocalNatsServer(store_dir=tmp / "js").start()
    try:
        last = await prefill(server.url, args.events)
        settings = Settings(
            nats_url=server.url,
            duckdb_path=tmp / "live.duckdb",
            backup_path=tmp / "backups",
            http_port=0,
        )
        async with Materializer(settings) as running:
            await running.wait_for_sequence(last, timeout=3600)
            nc = await nats.connect(server.url)
            notices: list[float] = []

            async def on_notice(msg: Any) -> None:
                if b'"heartbeat"' not in msg.data:
                    notices.append(time.monotonic())

            await nc.subscribe(CHANGES_SUBJECT, cb=on_notice)
            live = generate(99, int(args.rate * (args.backups * 10 + 10)))
            publisher = asyncio.create_task(publish(nc, live.messages, rate=args.rate))
            await asyncio.sleep(3)
            windows: list[tuple[float, float]] = []
            results = []
            for _ in range(args.backups):
                started = time.monotonic()
                msg = await nc.request(BACKUP_SUBJECT, b"", timeout=600)
                ended = time.monotonic()
                reply = msgspec.json.decode(msg.data, type=BackupReply)
                assert reply.manifest is not None, reply.error
                windows.append((started, ended))
                results.append(reply.manifest)
                await asyncio.sleep(3)
            await publisher
            await nc.drain()

        def longest(inside: bool) -> float:
            worst = 0.0
            for a, b in itertools.pairwise(notices):
                during = any(s <= b and a <= e for s, e in windows)
                if during == inside:
                    worst = max(worst, b - a)
            return worst

        return {
            "events_in_file": last,
            "rate": args.rate,
            "backup_seconds": [round(m.seconds, 2) for m in results],
            "backup_mb": [round(m.size_bytes / 1e6, 1) for m in results],
            "live_file_mb": round(du(settings.duckdb_path) / 1e6, 1),
            "longest_gap_during_backup_ms": round(longest(True) * 1000, 1),
            "longest_gap_without_backup_ms": round(longest(False) * 1000, 1),
        }
    finally:
        server.stop()


async def bench_rebuild(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server = LocalNatsServer(store_dir=tmp / "js").start()
    try:
        last = await prefill(server.url, args.events)
        root = tmp / "archive"
        settings = Settings(
            nats_url=server.url,
            duckdb_path=tmp / "live.duckdb",
            archive_path=root,
            archive_after_days=1.0,
            http_port=0,
        )
        async with Materializer(settings) as running:
            await running.wait_for_sequence(last, timeout=3600)
            assert running.lifecycle is not None
            await running.lifecycle.archive_once(datetime.now(UTC) + timedelta(days=2))
        figures: dict[str, Any] = {"events": last, "archive_mb": round(du(root) / 1e6, 1)}
        for name in ("stream", "archive", "archive_each", "stream_again"):
            started = time.perf_counter()
            if name.startswith("archive"):
                # What `pulse-bi rebuild` does before the stream's tail (none here):
                # open a new file, load or apply the archive, retire, checkpoint.
                done = await rebuild.rebuild(
                    tmp / f"{name}.duckdb", root, None, set_based=name == "archive"
                )
                assert done.last_sequence == last, done
                assert done.set_based is (name == "archive"), done
            else:
                # What a rebuild was before the archive: a materializer on an empty file
                # replaying the stream from sequence 1 with its own consumer.
                fresh = replace(settings, duckdb_path=tmp / f"{name}.duckdb", archive_after_days=0)
                async with Materializer(fresh) as running:
                    await running.wait_for_sequence(last, timeout=3600)
            figures[f"{name}_events_per_s"] = round(last / (time.perf_counter() - started))
        stream_rate = max(figures["stream_events_per_s"], figures["stream_again_events_per_s"])
        figures["ratio"] = round(figures["archive_events_per_s"] / stream_rate, 2)
        figures["ratio_each"] = round(figures["archive_each_events_per_s"] / stream_rate, 2)
        return figures
    finally:
        server.stop()


async def bench_year(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    per_day = round(20 * 86400 / args.scale)
    after, max_age = args.archive_after_days, args.stream_max_age_days
    server = LocalNatsServer(store_dir=tmp / "js").start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_stream(js)
        start = datetime(2025, 1, 1, tzinfo=UTC)
        root = tmp / "archive"
        kept = Settings(
            nats_url=server.url,
            duckdb_path=tmp / "kept.duckdb",
            archive_path=root,
            archive_after_days=after,
            archive_interval=1e9,
            checkpoint_interval=0,
            http_port=0,
        )
        # The same events kept whole, checkpointed as often: the file without the archive.
        whole = replace(kept, duckdb_path=tmp / "whole.duckdb", archive_after_days=0)
        day_first: list[int] = []
        purged = 0
        trajectory = []
        async with Materializer(whole) as plain, Materializer(kept) as running:
            for day in range(365):
                scenario = generate(
                    1000 + day,
                    per_day,
                    start=start + timedelta(days=day),
                    end=start + timedelta(days=day + 1),
                )
                info = await js.stream_info(STREAM_NAME)
                day_first.append(int(info.state.last_seq) + 1)
                await publish(nc, scenario.messages, ack_every=16)
                last = int((await js.stream_info(STREAM_NAME)).state.last_seq)
                await plain.wait_for_sequence(last, timeout=3600)
                await running.wait_for_sequence(last, timeout=3600)
                # One checkpoint per simulated day in both files (CHECKPOINT_INTERVAL).
                for materializer in (plain, running):
                    store, ingestor = materializer.store, materializer.ingestor
                    assert store is not None and ingestor is not None
                    await ingestor.between_batches(lambda s=store: s.checkpoint(force=True))
                old_day = day - int(after)
                if old_day >= 0:
                    await _archive_through(running, day_first, old_day, last)
                gone_day = day - int(max_age)
                if gone_day >= 0:
                    # The stream's max_age, compressed: drop the days older than it.
                    before = int((await js.stream_info(STREAM_NAME)).state.bytes)
                    await js.purge_stream(STREAM_NAME, seq=day_first[gone_day + 1])
                    purged += before - int((await js.stream_info(STREAM_NAME)).state.bytes)
                if (day + 1) % 73 == 0:
                    trajectory.append(
                        {
                            "day": day + 1,
                            "whole_duckdb_mb": round(du(whole.duckdb_path) / 1e6, 1),
                            "kept_duckdb_mb": round(du(kept.duckdb_path) / 1e6, 1),
                            "archive_mb": round(du(root) / 1e6, 1),
                        }
                    )
        stream_bytes = int((await js.stream_info(STREAM_NAME)).state.bytes)
        without = {
            "duckdb_mb": du(whole.duckdb_path) / 1e6,
            "stream_mb": (stream_bytes + purged) / 1e6,
        }
        with_archive = {
            "duckdb_mb": du(kept.duckdb_path) / 1e6,
            "archive_mb": du(root) / 1e6,
            "stream_mb": stream_bytes / 1e6,
        }
        files = len(list(root.glob("type=*/day=*/*.parquet")))
        await nc.drain()
    finally:
        server.stop()
    total_without = sum(without.values())
    total_with = sum(with_archive.values())
    return {
        "events": last,
        "events_per_simulated_day": per_day,
        "scale": args.scale,
        "archive_files": files,
        "without_archive_mb": {k: round(v, 1) for k, v in without.items()},
        "without_total_mb": round(total_without, 1),
        "with_archive_mb": {k: round(v, 1) for k, v in with_archive.items()},
        "with_total_mb": round(total_with, 1),
        "ratio": round(total_with / total_without, 3),
        "trajectory": trajectory,
    }


async def _archive_through(
    running: Materializer, day_first: list[int], day: int, last: int
) -> None:
    """Archive the stream messages of simulated days up to ``day`` (compressed time: by
    sequence, since every message's stream time is today)."""
    lifecycle, store = running.lifecycle, running.store
    assert lifecycle is not None and store is not None
    upto = day_first[day + 1] - 1 if day + 1 < len(day_first) else last
    horizon = store.read(archive.horizon)
    if upto <= horizon:
        return
    js = running.control_connection.jetstream()  # type: ignore[union-attr]
    taken: list[Any] = []
    async for chunk in replay.stream_messages(js, horizon + 1, upto):
        taken.extend(chunk)
    root = lifecycle.settings.archive_path
    run, _ = await asyncio.to_thread(store.read, functools.partial(archive.write_run, root, taken))
    await lifecycle.archiving.retire(run.last)
    await lifecycle.archiving.compact()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        parts = {"backup": bench_backup, "rebuild": bench_rebuild, "year": bench_year}
        figures = await parts[args.part](args, Path(tmp))
    print(
        json.dumps(
            {"machine": machine(), "load": os.getloadavg(), "part": args.part, **figures},
            default=str,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("backup", "rebuild", "year"), default="backup")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--backups", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1000.0)
    parser.add_argument("--archive-after-days", type=float, default=30.0)
    parser.add_argument("--stream-max-age-days", type=float, default=31.0)
    asyncio.run(main(parser.parse_args()))
