"""Online and offline backups, their manifest and verification, and restore."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import replace
from pathlib import Path

import duckdb
import msgspec
import nats
import pytest

from materializer import backup
from materializer.app import Materializer
from materializer.backup_service import BACKUP_SUBJECT, BackupReply
from materializer.settings import Settings
from pulse_bi import __version__
from pulse_bi.natsserver import LocalNatsServer, free_port
from tests.materializer.lifecycle_kit import (
    assert_same,
    caught_up,
    cli,
    contents,
    prefill,
    reference,
)
from tests.materializer.test_recovery import applied_sequence, spawn_materializer

# Several processes and replays each: more than the default 120 s on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def settings_for(server: LocalNatsServer, tmp_path: Path, **changes: object) -> Settings:
    base = Settings(
        nats_url=server.url,
        data_path=tmp_path,
        duckdb_path=tmp_path / "live.duckdb",
        backup_path=tmp_path / "backups",
        archive_path=tmp_path / "archive",
        http_port=0,
        heartbeat_interval=0.5,
        batch_max_events=500,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def ask_backup(url: str, payload: bytes, timeout: float = 60) -> BackupReply:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(BACKUP_SUBJECT, payload, timeout=timeout)
        return msgspec.json.decode(msg.data, type=BackupReply)
    finally:
        await nc.drain()


async def test_a_backup_taken_during_ingest_equals_a_fresh_replay_to_its_sequence(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last = await prefill(nats_server.url, 12_000, seed=3)
    settings = settings_for(nats_server, tmp_path)
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last // 5, timeout=60)
        reply = await ask_backup(nats_server.url, b"")
        stats = running.stats()
        await running.wait_for_sequence(last, timeout=60)

    assert reply.error is None, reply.error
    assert reply.manifest is not None and reply.path is not None
    taken = backup.verify(Path(reply.path))
    # Taken while ingest went on: somewhere in the middle, not at either end.
    assert 0 < taken.manifest.last_sequence < last
    assert taken.manifest.sha256 == backup.sha256_of(taken.database)
    assert taken.manifest.events_applied > 0
    assert stats["last_backup_sequence"] == taken.manifest.last_sequence
    fresh = await reference(
        nats_server.url, tmp_path / "fresh.duckdb", upto=taken.manifest.last_sequence
    )
    assert_same(contents(taken.database), contents(fresh))

    # Restored, the materializer resumes after the backup's sequence and ends where the
    # original did: exactly once.
    restored = cli(
        "restore",
        str(taken.path),
        env={"DUCKDB_PATH": str(tmp_path / "restored.duckdb"), "NATS_URL": nats_server.url},
    )
    assert restored.returncode == 0, restored.stderr
    async with Materializer(replace(settings, duckdb_path=tmp_path / "restored.duckdb")) as again:
        await again.wait_for_sequence(last, timeout=60)
    assert_same(contents(tmp_path / "restored.duckdb"), contents(tmp_path / "live.duckdb"))


async def test_restore_onto_a_running_materializer_is_refused_and_leaves_it_alone(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last = await prefill(nats_server.url, 2_000, seed=4)
    settings = settings_for(nats_server, tmp_path)
    async with caught_up(settings, last) as running:
        reply = await ask_backup(
            nats_server.url, json.dumps({"dest": str(tmp_path / "b")}).encode()
        )
        assert reply.path is not None
        refused = await asyncio.to_thread(
            cli,
            "restore",
            reply.path,
            env={"DUCKDB_PATH": str(settings.duckdb_path), "NATS_URL": nats_server.url},
        )
        assert refused.returncode == 2
        assert "refusing to restore" in refused.stderr
        assert "Stop the materializer first" in refused.stderr
        assert running.health()[0] == "ok"
        assert running.stats()["last_sequence"] == last
    assert not list(tmp_path.glob("live.duckdb.*restor*"))


async def test_offline_backup_of_a_stopped_file_and_refused_while_the_file_is_held(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last = await prefill(nats_server.url, 2_000, seed=5)
    settings = settings_for(nats_server, tmp_path)
    async with caught_up(settings, last):
        with pytest.raises(backup.BackupError, match=r"(?i)in use"):
            await asyncio.to_thread(
                backup.snapshot_offline, settings.duckdb_path, tmp_path / "off", __version__
            )
    # Stopped: no materializer answers over NATS, the CLI backs up the file itself.
    done = cli(
        "backup",
        str(tmp_path / "off"),
        env={"DUCKDB_PATH": str(settings.duckdb_path), "NATS_URL": nats_server.url},
    )
    assert done.returncode == 0, done.stderr
    assert "backing up the stopped file" in done.stderr
    (found,) = backup.list_backups(tmp_path / "off")
    verified = backup.verify(found[1])
    assert verified.manifest.last_sequence == last
    assert_same(contents(verified.database), contents(settings.duckdb_path))
    # Restored over the stopped file: the old one (and its WAL) is kept aside.
    before = contents(settings.duckdb_path)
    restored = cli(
        "restore",
        str(found[1]),
        env={"DUCKDB_PATH": str(settings.duckdb_path), "NATS_URL": nats_server.url},
    )
    assert restored.returncode == 0, restored.stderr
    (aside,) = tmp_path.glob("live.duckdb.before-restore-*")
    assert_same(contents(aside), before)
    assert_same(contents(settings.duckdb_path), before)


async def test_kill_9_during_a_backup_leaves_the_live_file_intact_and_no_valid_looking_backup(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last = await prefill(nats_server.url, 60_000, seed=6)
    port = free_port()
    live = tmp_path / "crash.duckdb"
    root = tmp_path / "backups"
    process = spawn_materializer(nats_server.url, live, port)
    try:
        async with asyncio.timeout(120):
            while await applied_sequence(port) < last:
                await asyncio.sleep(0.1)
        nc = await nats.connect(nats_server.url)
        payload = json.dumps({"dest": str(root)}).encode()
        request = asyncio.create_task(nc.request(BACKUP_SUBJECT, payload, timeout=60))
        async with asyncio.timeout(30):
            while not list(root.glob(".partial-*/*")):
                await asyncio.sleep(0.001)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    request.cancel()
    await nc.close()
    assert process.returncode == -signal.SIGKILL

    assert backup.list_backups(root) == []
    (partial,) = root.glob(".partial-*")
    with pytest.raises(backup.BackupError, match="never finished"):
        backup.verify(partial)
    conn = duckdb.connect(str(live), read_only=True)
    try:
        (applied,) = conn.execute("SELECT last_sequence FROM pipeline_state").fetchone() or (0,)
    finally:
        conn.close()
    assert applied == last
    # The next backup clears what the killed one left and succeeds.
    taken = backup.snapshot_offline(live, root, __version__)
    assert not list(root.glob(".partial-*"))
    assert backup.verify(taken.path).manifest.last_sequence == last


async def test_bad_backup_requests_get_a_clear_error_and_no_backup(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    settings = settings_for(nats_server, tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    async with Materializer(settings):
        cases = {
            b"{": "bad request",
            b"[]": "bad request",
            b'{"dest": 5}': "bad request",
            b'{"dest": ""}': "dest is empty",
            b'{"dest": "   "}': "dest is empty",
            b'{"dest": "a\\u0000b"}': "NUL",
            json.dumps({"dest": "x" * 5000}).encode(): "longer than",
            json.dumps({"dest": str(a_file)}).encode(): "not a directory",
            b'{"dest": null, "extra": 1}': "bad request",
            b"\xff\xfe": "bad request",
        }
        for payload, expected in cases.items():
            reply = await ask_backup(nats_server.url, payload)
            assert reply.error is not None and expected in reply.error, (payload, reply)
            assert reply.path is None
        # Unicode in the directory name is fine.
        reply = await ask_backup(
            nats_server.url, json.dumps({"dest": str(tmp_path / "sauvegardes-été-備份")}).encode()
        )
        assert reply.error is None, reply.error
    assert not (tmp_path / "backups").exists()


def test_verify_refuses_damaged_or_incomplete_backups(tmp_path: Path) -> None:
    from materializer.store import Store

    Store.open(tmp_path / "src.duckdb").close()
    taken = backup.snapshot_offline(tmp_path / "src.duckdb", tmp_path / "b", __version__)
    assert backup.verify(taken.path).manifest.schema_version >= 6
    manifest_path = taken.path / backup.MANIFEST_FILE
    original = manifest_path.read_bytes()

    def broken(change: dict[str, object], match: str) -> None:
        document = json.loads(original)
        document.update(change)
        manifest_path.write_text(json.dumps(document))
        with pytest.raises(backup.BackupError, match=match):
            backup.verify(taken.path)
        manifest_path.write_bytes(original)

    broken({"sha256": "0" * 64}, "checksum")
    broken({"size_bytes": 1}, "bytes")
    broken({"schema_version": 9999}, "newer than this")
    broken({"last_sequence": 5}, "differs")
    broken({"file": "../src.duckdb"}, "unsafe")
    broken({"format": 2}, "format")
    broken({"last_sequence": "five"}, "not a valid manifest")
    manifest_path.write_text("")
    with pytest.raises(backup.BackupError, match="not a valid manifest"):
        backup.verify(taken.path)
    manifest_path.unlink()
    with pytest.raises(backup.BackupError, match=r"no manifest\.json"):
        backup.verify(taken.path)
    manifest_path.write_bytes(original)
    database = taken.database
    data = bytearray(database.read_bytes())
    data[len(data) // 2] ^= 0xFF
    database.write_bytes(bytes(data))
    with pytest.raises(backup.BackupError, match="checksum"):
        backup.verify(taken.path)
    with pytest.raises(backup.BackupError, match="no such directory"):
        backup.verify(tmp_path / "nothing")


def test_keep_n_daily_and_m_weekly(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    made = [(start + timedelta(hours=12 * i), tmp_path / f"b{i}") for i in range(60)]
    keep = backup.to_keep(made, daily=7, weekly=4)
    newest = made[-1][1]
    assert newest in keep
    days = {when.date() for when, path in made if path in keep}
    # 7 newest days, plus the newest of each of the 4 newest weeks (some are the same).
    assert len(keep) <= 11
    assert {(made[-1][0] - timedelta(days=d)).date() for d in range(7)} <= days
    assert backup.to_keep(made, daily=0, weekly=0) == {newest}
    assert backup.to_keep([], daily=3, weekly=3) == set()
    # Year 1 and 9999 sort and group like any other.
    edges = [
        (datetime(1, 1, 1, tzinfo=UTC), tmp_path / "old"),
        (datetime(9999, 12, 31, tzinfo=UTC), tmp_path / "new"),
    ]
    assert backup.to_keep(edges, daily=1, weekly=1) == {tmp_path / "new"}
    assert backup.to_keep(edges, daily=2, weekly=0) == {tmp_path / "new", tmp_path / "old"}


async def test_scheduled_backups_keep_the_newest_of_each_day_and_week(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    last = await prefill(nats_server.url, 500, seed=7)
    settings = settings_for(
        nats_server, tmp_path, backup_interval=1.2, backup_keep_daily=1, backup_keep_weekly=1
    )
    taken: set[Path] = set()
    async with caught_up(settings, last) as running:
        assert running.lifecycle is not None
        async with asyncio.timeout(60):
            # Pruning follows each backup: wait for the third and its pruning.
            while len(taken) < 3 or len(backup.list_backups(settings.backup_path)) != 1:
                if running.lifecycle.backups.last_backup is not None:
                    taken.add(running.lifecycle.backups.last_backup.path)
                await asyncio.sleep(0.05)
        stats = running.stats()
        assert running.health()[0] == "ok"
    kept = backup.list_backups(settings.backup_path)
    # All taken today, in this ISO week: only the newest is left.
    assert len(kept) == 1 and kept[0][1] in taken
    assert backup.verify(kept[0][1]).manifest.last_sequence == last
    assert stats["last_backup_sequence"] == last
    assert stats["last_backup_error"] is None
