"""Attacks on the ingest path as a whole: an unlucky producer and an unlucky operator
(nats-server restarted mid-ingest, a slow writer that makes the consumer pause, payloads
at the size limit, site headers spelled oddly). Exactly once must hold throughout."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from msgspec import structs
from nats.js import JetStreamContext

from materializer import archive, consumer, rebuild
from materializer.aggregates import deltas, pipeline
from materializer.app import Materializer
from materializer.settings import Settings
from materializer.store import BadQuery, RawMessage, Store
from pulse_bi.contract import STREAM_NAME
from pulse_bi.natsserver import LocalNatsServer
from tests.conftest import local_materializer
from tests.materializer.eventkit import Stream
from tests.materializer.test_deltas import READS, answers, traffic
from tests.materializer.test_runtime import order


def _big_order(order_id: str, size: int) -> dict[str, Any]:
    """A valid order whose JSON is about ``size`` bytes (a long extension attribute)."""
    event = order(order_id, "10.00", time="2026-11-25T10:00:00Z")
    event["note"] = ""
    event["note"] = "n" * (size - len(json.dumps(event).encode()))
    return event


async def _publish(js: JetStreamContext, event: dict[str, Any], site_line: str | None) -> int:
    headers = {"Nats-Msg-Id": event["id"]}
    if site_line is not None:
        headers["Pulse-Site"] = site_line
    for _ in range(60):  # JetStream takes a moment to come back after a restart
        try:
            ack = await js.publish(
                "pulse.events.orders.created", json.dumps(event).encode(), headers=headers
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            await asyncio.sleep(0.5)  # re-sent with its Nats-Msg-Id: stored once
        else:
            return ack.seq
    raise AssertionError("JetStream did not come back")


async def test_exactly_once_through_a_server_restart_pauses_and_big_payloads(
    nats_server: LocalNatsServer,
    js: JetStreamContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow writer (the buffer fills: pause, resubscribe), payloads up to 1 MiB and a
    nats-server restart in the middle: every event is applied once, none lost."""
    settings: Settings = local_materializer(
        nats_server.url, tmp_path / "pulse_bi.duckdb", batch_max_events=20, batch_max_wait_ms=5
    )
    apply = Store.apply_batch

    def slow(self: Store, batch: Any) -> Any:
        time.sleep(0.01)
        return apply(self, batch)

    monkeypatch.setattr(Store, "apply_batch", slow)
    sites = [None, "wh1", " wh2 ", "WH1"]
    expected: dict[str, int] = {}
    last = 0

    async def publish(numbers: range) -> int:
        sequence = 0
        for i in numbers:
            size = 1024 * 1024 - 200 if i % 50 == 7 else 300
            site = sites[i % len(sites)]
            sequence = await _publish(js, _big_order(f"O-{i}", size), site)
            key = (site or "").strip()
            expected[key] = expected.get(key, 0) + 1
        return sequence

    await publish(range(400))  # a backlog: the buffer fills, delivery pauses
    async with Materializer(settings) as running:
        assert running.ingestor is not None
        await asyncio.sleep(0.3)
        nats_server.restart()  # mid-backlog
        async with asyncio.timeout(30):
            while not js._nc.is_connected:  # the test's own client reconnects too
                await asyncio.sleep(0.1)
        last = await publish(range(400, 500))
        await running.wait_for_sequence(last, timeout=120)
        pauses = running.ingestor.pauses
        stats = running.store.stats()
        sites_seen = {row["site"]: row["events"] for row in running.store.query("sites", {}).wire}
        gaps = running.store.read(
            lambda c: c.execute("SELECT count(*) FROM stream_gaps").fetchall()[0][0]
        )
    assert pauses > 0
    published = 500
    assert stats["last_sequence"] == last
    assert stats["events_applied"] == published
    assert stats["events_duplicate"] == 0
    assert gaps == 0
    assert sites_seen == expected


def test_a_rebuild_does_not_take_a_bad_site_rejects_time_as_the_last_event_time(
    tmp_path: Path,
) -> None:
    """A message rejected for its Pulse-Site header never reached an aggregate: live
    ingest does not count its time, and neither may a set-based rebuild (its raw bytes
    alone decode as a valid event)."""
    stream = Stream()
    good = structs.replace(stream.order("O-1", time="2026-11-25T10:00:00Z"), site="wh1")
    bad = structs.replace(stream.order("O-2", time="2026-11-25T11:00:00Z"), site="wh 1")
    live = Store.open(tmp_path / "live.duckdb")
    try:
        live.apply_batch([good, bad])
        archive.write_run(tmp_path / "archive", [good, bad], live.conn)
        expected = live.stats()
    finally:
        live.close()
    assert expected["events_rejected"] == 1
    rebuilt = Store.open(tmp_path / "rebuilt.duckdb")
    try:
        assert rebuild.load(rebuilt.conn, tmp_path / "archive") is not None
        # What the file holds now (the store's memory is of the empty file it opened).
        got = rebuilt.read(pipeline.state)
    finally:
        rebuilt.close()
    assert (
        got["last_event_time"]
        == expected["last_event_time"]
        == datetime(2026, 11, 25, 10, tzinfo=UTC)
    )


@pytest.mark.parametrize("site", ["wh1\n", "\n", "wh1\n\n", "wh1 "])
def test_a_site_parameter_with_a_trailing_newline_is_refused(tmp_path: Path, site: str) -> None:
    """``$`` in a searched pattern also matches before a final newline: 'wh1\\n' is not
    a site name and must be a clear error, not an empty answer."""
    store = Store.open(tmp_path / "params.duckdb")
    try:
        for name in ("stock_levels", "low_stock", "stock_movements"):
            with pytest.raises(BadQuery, match="parameter 'site' must match"):
                store.query(name, {"site": site})
        assert store.query("stock_levels", {"site": "wh1"}).wire == []
    finally:
        store.close()


_CHILD = """
import sys
from msgspec import structs
from materializer.aggregates import deltas
from materializer.store import Store
from tests.materializer.eventkit import Stream
from tests.materializer.test_deltas import READS, answers, traffic
from tests.materializer.test_deltas import traffic

deltas.COMPACT_ROWS = 7
store = Store.open(sys.argv[1])
for number, batch in enumerate(traffic(Stream(), 400, seed=11)):
    site = ("", "wh1", "wh2")[number % 3] or None
    batch = [structs.replace(m, site=site) for m in batch]
    store.apply_batch(batch)  # folds first whenever the deltas hold 7 rows
    if number == 20:
        print("running", flush=True)
"""


def _site_batches() -> list[list[RawMessage]]:
    return [
        [structs.replace(m, site=("", "wh1", "wh2")[number % 3] or None) for m in batch]
        for number, batch in enumerate(traffic(Stream(), 400, seed=11))
    ]


def _base_keys_unique(store: Store) -> bool:
    """One base row per key, the site among the key columns."""
    keys = {
        "sales_by_hour_base": "hour, channel, site",
        "product_sales_by_hour_base": "hour, sku, site",
        "stock_snapshot_base": "sku, warehouse, site",
    }
    sql = " AND ".join(
        f"(SELECT count(*) FROM {t}) = (SELECT count(DISTINCT ({k})) FROM {t})"
        for t, k in keys.items()
    )
    return bool(store.read(lambda cursor: cursor.execute(f"SELECT {sql}").fetchall())[0][0])


AFTER_THE_KILL = 40  # batches the reopened writer applies one by one, folding as it goes


@pytest.mark.parametrize("after", [0.2, 0.6])
def test_a_kill_between_batches_and_folds_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, after: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL a writer that folds every few batches, wherever it is (in a batch, in a
    fold, between them): the file reopens at a batch boundary with exactly that
    prefix's answers, per site too, and ingest goes on from there exactly."""
    path = tmp_path / "killed.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"running\n"
        time.sleep(after)
    finally:
        child.kill()
        child.wait()
    batches = _site_batches()
    monkeypatch.setattr(deltas, "COMPACT_ROWS", 10**9)
    killed = Store.open(path)
    reference = Store.open(tmp_path / "reference.duckdb")
    try:
        last = killed.last_sequence()
        done = [b for b in batches if b[-1].sequence <= last]
        assert done and done[-1][-1].sequence == last  # a batch boundary
        assert len(done) < len(batches)  # killed mid-ingest
        reference.apply_batch([m for b in done for m in b])
        for site in (None, "", "wh1", "wh2"):
            params = {} if site is None else {"site": site}
            for name, window in READS:
                assert killed.query(name, {**window, **params}).wire == (
                    reference.query(name, {**window, **params}).wire
                ), (name, site)
        # Ingest goes on from there exactly: batch by batch over several folds, then the
        # rest in one batch (the reference takes it all at once: batching changes no answer).
        monkeypatch.setattr(deltas, "COMPACT_ROWS", 7)
        rest = batches[len(done) :]
        for batch in rest[:AFTER_THE_KILL]:
            killed.apply_batch(batch)
        killed.apply_batch([m for b in rest[AFTER_THE_KILL:] for m in b])
        reference.apply_batch([m for b in rest for m in b])
        assert killed.stats()["events_applied"] == reference.stats()["events_applied"]
        assert answers(killed) == answers(reference)
        assert _base_keys_unique(killed)
    finally:
        killed.close()
        reference.close()


async def test_messages_deleted_from_the_stream_are_gaps_recorded_once(
    nats_server: LocalNatsServer, js: JetStreamContext, tmp_path: Path
) -> None:
    """Real gaps (the first message, a lone one, three in a row, the last before a
    resubscription) in a backlog that makes delivery pause: each is re-read once,
    then accepted and recorded; everything else is applied exactly once."""
    settings: Settings = local_materializer(
        nats_server.url, tmp_path / "pulse_bi.duckdb", batch_max_events=10, batch_max_wait_ms=5
    )
    last = 0
    for i in range(200):
        last = await _publish(js, _big_order(f"O-{i}", 300), "wh1" if i % 2 else None)
    deleted = [1, 17, 60, 61, 62, 150]
    for sequence in deleted:
        await js.delete_msg(STREAM_NAME, sequence)
    async with Materializer(settings) as running:
        await running.wait_for_sequence(last, timeout=60)
        stats = running.store.stats()
        gaps = running.store.read(
            lambda c: c.execute(
                "SELECT from_sequence, to_sequence FROM stream_gaps ORDER BY ALL"
            ).fetchall()
        )
    assert stats["events_applied"] == 200 - len(deleted)
    assert stats["events_duplicate"] == 0
    assert gaps == [(1, 1), (17, 17), (60, 62), (150, 150)]


#: Backlog of the flow-control tests: 750 events of 8 KiB, ~6 MB, more than the
#: server's 2 MiB flow-control window, behind batches of 20.
_BACKLOG = 750


async def _backlog(
    server: LocalNatsServer, js: JetStreamContext, path: Path
) -> tuple[Settings, int]:
    """A materializer's settings with batches of 20, and a backlog of ``_BACKLOG`` events
    of 8 KiB already in the stream; returns them with its last sequence."""
    settings: Settings = local_materializer(
        server.url, path, batch_max_events=20, batch_max_wait_ms=0
    )
    last = 0
    for i in range(_BACKLOG):
        last = await _publish(js, _big_order(f"O-{i}", 8 * 1024), None)
    return settings, last


def _gated_writer(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make every batch wait until the returned event is set (on this loop)."""
    apply = Store.apply_batch
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def gated(self: Store, batch: Any) -> Any:
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(timeout=60)
        return apply(self, batch)

    monkeypatch.setattr(Store, "apply_batch", gated)
    return gate


async def _until_held(ingestor: consumer.Ingestor) -> int:
    """Wait until the buffer is full and a flow-control answer is held; how many are."""
    for _ in range(600):
        if ingestor.held_answers:
            break
        await asyncio.sleep(0.05)
    assert ingestor.held_answers
    return ingestor.held_answers


async def test_a_full_buffer_pauses_delivery_by_flow_control_and_nothing_comes_twice(
    nats_server: LocalNatsServer,
    js: JetStreamContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog of 6 MB behind a slow writer (more than the server's 2 MiB flow-control
    window): the flow-control answers are held back while three batches wait, so the
    server stops delivering; the same consumer goes on once the writer caught up, and no
    message arrives twice (``strays``, what unsubscribing to pause used to cost)."""
    settings, last = await _backlog(nats_server, js, tmp_path / "pulse_bi.duckdb")
    apply = Store.apply_batch

    def slow(self: Store, batch: Any) -> Any:
        time.sleep(0.01)
        return apply(self, batch)

    monkeypatch.setattr(Store, "apply_batch", slow)
    async with Materializer(settings) as running:
        ingestor = running.ingestor
        assert ingestor is not None
        await running.wait_for_sequence(last, timeout=120)
        held, pauses, strays = ingestor.held_answers, ingestor.pauses, ingestor.strays
        subscriptions, held_peak = ingestor._subscriptions, ingestor.held_peak_bytes
        stats = running.store.stats()
        sample = running.metrics.registry.get_sample_value
        paused_metric = sample("pulse_materializer_delivery_pauses_total")
        again_metric = sample("pulse_materializer_messages_received_again_total")
    assert stats["events_applied"] == _BACKLOG
    assert stats["events_duplicate"] == stats["events_rejected"] == 0
    assert pauses > 0 and held > 0  # the server was asked to wait
    assert subscriptions == 1  # by the same consumer throughout
    assert strays == 0
    assert (paused_metric, again_metric) == (pauses, 0)
    assert held_peak < consumer.HOLD_SPILL_BYTES  # what arrived after the hold: no spill


async def test_a_long_pause_keeps_its_consumer_through_the_stalled_heartbeats(
    nats_server: LocalNatsServer,
    js: JetStreamContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer stops for longer than two heartbeat intervals while flow control is
    held back: the server's idle heartbeats go on (naming the stalled flow control, whose
    answer is held too) and say it delivered exactly what arrived, so the consumer is
    neither taken for lost nor read again; once the writer goes on, so does delivery."""
    monkeypatch.setattr(consumer, "HEARTBEAT_SECONDS", 0.5)  # nats-server's least: 0.1
    settings, last = await _backlog(nats_server, js, tmp_path / "pulse_bi.duckdb")
    gate = _gated_writer(monkeypatch)
    async with Materializer(settings) as running:
        ingestor = running.ingestor
        assert ingestor is not None
        held = await _until_held(ingestor)
        await asyncio.sleep(3 * consumer.HEARTBEAT_SECONDS)
        stalled = ingestor.held_answers - held  # the heartbeats' stalled flow control
        gate.set()
        await running.wait_for_sequence(last, timeout=120)
        subscriptions, strays, gaps = ingestor._subscriptions, ingestor.strays, ingestor.gaps
        stats = running.store.stats()
    assert stalled >= 1
    assert (subscriptions, strays, gaps) == (1, 0, 0)
    assert stats["events_applied"] == _BACKLOG
    assert stats["events_duplicate"] == stats["events_rejected"] == 0


async def test_a_consumer_lost_while_flow_control_is_held_is_created_again(
    nats_server: LocalNatsServer,
    js: JetStreamContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The consumer is deleted while its flow-control answers are held back (as a NATS
    restart loses a memory-stored consumer): no heartbeat comes, so the ingestor creates
    one again after the last message received, and every event is applied once."""
    monkeypatch.setattr(consumer, "HEARTBEAT_SECONDS", 0.5)  # nats-server's least: 0.1
    settings, last = await _backlog(nats_server, js, tmp_path / "pulse_bi.duckdb")
    gate = _gated_writer(monkeypatch)  # the writer waits while the consumer is deleted
    caplog.set_level(logging.INFO, "pulse_bi.materializer.consumer")
    async with Materializer(settings) as running:
        ingestor = running.ingestor
        assert ingestor is not None
        await _until_held(ingestor)
        for info in await js.consumers_info(STREAM_NAME):
            await js.delete_consumer(STREAM_NAME, info.name)
        for _ in range(200):  # two heartbeat intervals without anything
            if "no message or heartbeat" in caplog.text:
                break
            await asyncio.sleep(0.05)
        gate.set()
        await running.wait_for_sequence(last, timeout=120)
        subscriptions, strays = ingestor._subscriptions, ingestor.strays
        stats = running.store.stats()
    assert "no message or heartbeat" in caplog.text
    assert subscriptions == 2
    assert stats["events_applied"] == _BACKLOG
    assert stats["events_duplicate"] == stats["events_rejected"] == 0
    assert strays == 0  # the lost consumer sent nothing more


async def test_events_near_the_size_limit_bound_the_batch_and_the_buffer_by_bytes(
    nats_server: LocalNatsServer,
    js: JetStreamContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog of ~1 MiB events behind a slow writer: counted in events alone, the
    buffer would hold them all (three times ``batch_max_events`` of them: tens of GiB at
    the default). Batches stop at ``BATCH_MAX_BYTES`` and delivery pauses at three
    batches' worth of bytes, with what the server had queued arriving afterwards up to
    ``HOLD_SPILL_BYTES``; every event is still applied once."""
    monkeypatch.setattr(consumer, "BATCH_MAX_BYTES", 4 * 1024 * 1024)
    # Less than the server queues for the connection: the pause ends in unsubscribing.
    monkeypatch.setattr(consumer, "HOLD_SPILL_BYTES", 8 * 1024 * 1024)
    settings: Settings = local_materializer(
        nats_server.url, tmp_path / "pulse_bi.duckdb", batch_max_events=100, batch_max_wait_ms=5
    )
    last = 0
    for i in range(60):
        last = await _publish(js, _big_order(f"O-{i}", 1024 * 1024 - 300), None)
    apply = Store.apply_batch
    batch_bytes: list[int] = []

    def slow(self: Store, batch: Any) -> Any:
        batch_bytes.append(sum(len(m.data) for m in batch))
        time.sleep(0.2)
        return apply(self, batch)

    monkeypatch.setattr(Store, "apply_batch", slow)
    async with Materializer(settings) as running:
        ingestor = running.ingestor
        assert ingestor is not None
        peak = 0
        while running.store.last_sequence() < last:
            peak = max(peak, sum(len(m.data) for m in ingestor._buffer))
            await asyncio.sleep(0.02)
        await running.wait_for_sequence(last, timeout=60)
        pauses, subscriptions = ingestor.pauses, ingestor._subscriptions
        strays, held_peak = ingestor.strays, ingestor.held_peak_bytes
        stats = running.store.stats()
        again_metric = running.metrics.registry.get_sample_value(
            "pulse_materializer_messages_received_again_total"
        )
    assert stats["events_applied"] == 60
    assert stats["events_duplicate"] == 0
    assert pauses > 0
    assert subscriptions > 1  # unsubscribed, and subscribed again after the last received
    # What the server had queued for the subscription left: counted, and sent again.
    assert again_metric == strays
    # The most the buffer grew past the pause: up to the spill, crossed by one message.
    assert 0 < held_peak <= consumer.HOLD_SPILL_BYTES + 1024 * 1024
    assert max(batch_bytes) <= 4 * 1024 * 1024
    # Three batches, then what the server had queued up to the spill: each limit is
    # crossed by one message.
    assert peak <= 3 * 4 * 1024 * 1024 + consumer.HOLD_SPILL_BYTES + 2 * 1024 * 1024
