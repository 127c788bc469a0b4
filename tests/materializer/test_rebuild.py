"""Set-based rebuild from the archive's typed rows (materializer/rebuild.py): it ends
identical to the live file it was archived from and to a message-by-message rebuild:
every table, every named query, the seen index, the pipeline counters."""

from __future__ import annotations

import functools
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from materializer import archive, rebuild
from materializer.store import RawMessage, Store
from pulse_bi.simulator import generate
from tests.materializer.eventkit import Stream
from tests.materializer.lifecycle_kit import answers, assert_same, contents, seen_answers

# Live files applied in batches of two: more than the default 120 s on a loaded machine.
pytestmark = pytest.mark.timeout(300)

RECEIVED = datetime(2026, 11, 25, 12, tzinfo=UTC)


class Live:
    """A store applying batches and archiving as the materializer does (write a run
    from the stream's messages and the file's rows, then retire it)."""

    def __init__(self, path: Path, root: Path) -> None:
        self.store = Store.open(path)
        self.root = root
        self.messages: list[RawMessage] = []
        self.batches: list[list[RawMessage]] = []
        self.horizon = 0

    def apply(self, batch: list[RawMessage]) -> None:
        self.messages.extend(batch)
        self.batches.append(batch)
        self.store.apply_batch(batch)

    def archive(self, upto: int | None = None, *, retire: bool = True) -> None:
        last = self.store.last_sequence() if upto is None else upto
        taken = [m for m in self.messages if self.horizon < m.sequence <= last]
        run, _ = self.store.read(functools.partial(archive.write_run, self.root, taken))
        if retire:
            archive.retire(self.store.conn, run.last)
            self.horizon = run.last
            self.store.archive = archive.ArchiveReader(self.root, self.horizon)


def simulated(seed: int, count: int, start: int) -> list[RawMessage]:
    """A seeded scenario (duplicates, bad events, late events) as stream messages."""
    scenario = generate(seed, count, out_of_order=0.05, duplicates=0.02, bad=0.01)
    return [
        RawMessage(start + i, m.subject, m.data, RECEIVED) for i, m in enumerate(scenario.messages)
    ]


def in_batches(messages: list[RawMessage], size: int) -> list[list[RawMessage]]:
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def crafted(stream: Stream) -> tuple[list[list[RawMessage]], list[list[RawMessage]]]:
    """Batches before the first archive run, and batches after it: cancellations in
    the same batch as their order, before it, repeated, of archived orders, waiting
    forever; repeated order and invoice ids; payments before their invoice and of
    archived invoices, a refund; rejects and re-delivered events."""
    a2 = stream.order("A-2", lines=(("SKU-2", 3, "7.50"), ("SKU-3", 1, "99.99")))
    first = [
        [
            stream.order("A-1"),
            stream.cancel("A-1"),
            stream.cancel("A-1"),
            stream.cancel("P-1"),
            stream.cancel("P-2"),
            stream.cancel("P-2"),
            stream.invoice("I-1", "100.00"),
            stream.payment("PAY-1", "I-1", "40.00"),
            stream.payment("PAY-2", "I-2", "30.00"),
            stream.payment("PAY-3", "I-3", "5.00"),
            stream.raw(b"{not json"),
            a2,
            stream.move("SKU-2", "W1", -3),
        ],
        [
            stream.order("P-1", channel="store"),
            stream.invoice("I-2", "50.00"),
            stream.payment("PAY-4", "I-1", "60.00"),
            stream.order("A-1", total="1.00"),  # id created again: rejected
            stream.invoice("I-1", "7.00"),  # id issued again: rejected
            stream.raw(a2.data, a2.subject),  # re-delivered
            stream.cancel("P-3"),
            stream.invoice("I-5", "80.00"),
            stream.payment("PAY-5", "I-5", "90.00"),
        ],
    ]
    again = first[1][5]
    after = [
        [
            stream.cancel("A-2"),  # an archived order
            stream.raw(again.data, again.subject),
            stream.order("P-3"),  # its cancellation waited in the archive
            stream.payment("PAY-7", "I-2", "20.00"),  # settles an archived invoice
            stream.invoice("I-4", "200.00"),
            stream.product("SKU-2", name="Renamed", reorder_point=4),
            # A refund once the invoice left the open items: it is open again.
            stream.payment("PAY-6", "I-5", "-20.00"),
        ],
    ]
    return first, after


@pytest.mark.parametrize("batch", [2, 400])
async def test_set_based_rebuild_ends_identical_to_the_live_file_and_a_replay(
    tmp_path: Path, batch: int
) -> None:
    root = tmp_path / "archive"
    live = Live(tmp_path / "live.duckdb", root)
    history = simulated(51, 800, start=1)
    stream = Stream(start=len(history) + 1)
    before, after = crafted(stream)
    for chunk in in_batches(history, batch):
        live.apply(chunk)
    for chunk in before:
        live.apply(chunk)
    live.archive(upto=len(history) // 2)  # two runs: the store's own split
    live.archive()
    for chunk in after:
        live.apply(chunk)
    more = simulated(52, 600, start=stream.next_sequence)
    for chunk in in_batches(more, batch):
        live.apply(chunk)
    live.archive(upto=more[300].sequence)
    for chunk in in_batches(simulated(53, 300, start=more[-1].sequence + 1), batch):
        live.apply(chunk)
    live.store.close()

    files = {}
    for name, set_based in (("set", True), ("each", False)):
        path = tmp_path / f"{name}.duckdb"
        done = await rebuild.rebuild(path, root, None, set_based=set_based)
        assert done.set_based is set_based
        assert done.from_archive == more[300].sequence == done.archive_horizon
        # The stream's tail, as live ingest batched it (what the archive holds is skipped).
        store = Store.open(path)
        store.archive = archive.ArchiveReader(root, done.archive_horizon)
        for chunk in live.batches:
            store.apply_batch(chunk)
        store.close()
        files[name] = path

    original = tmp_path / "live.duckdb"
    expected = contents(original)
    assert expected["sales_by_hour"] and expected["pending_cancellations"]
    assert expected["pending_payments"] and expected["rejected_events"]
    for path in files.values():
        assert_same(contents(path), expected)
        assert seen_answers(path, live.messages) == seen_answers(original, live.messages)
        assert answers(path) == answers(original)


async def test_an_archive_without_typed_rows_is_rebuilt_message_by_message(
    tmp_path: Path,
) -> None:
    root = tmp_path / "archive"
    live = Live(tmp_path / "live.duckdb", root)
    for chunk in in_batches(simulated(61, 500, start=1), 50):
        live.apply(chunk)
    live.archive()
    live.store.close()
    # Format 1: a marker holding the message count, no typed rows.
    for run in archive.runs(root):
        (root / archive.RUNS / f"{run.first}-{run.last}.done").write_text("500\n")
    shutil.rmtree(root / archive.ROWS)
    assert rebuild.why_not(root) == "run 1-500 is of archive format 1 (no typed rows)"
    done = await rebuild.rebuild(tmp_path / "old.duckdb", root, None)
    assert not done.set_based and done.from_archive == 500
    assert_same(contents(tmp_path / "old.duckdb"), contents(tmp_path / "live.duckdb"))


async def test_a_set_based_rebuild_needs_an_empty_file(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    live = Live(tmp_path / "live.duckdb", root)
    live.apply(simulated(71, 50, start=1))
    live.archive()
    with pytest.raises(archive.ArchiveError, match="needs an empty file"):
        rebuild.load(live.store.conn, root)
    live.store.close()
    assert rebuild.why_not(tmp_path / "nothing") == "the archive has no finished run"


def test_an_archived_reject_does_not_confirm_its_id_as_applied(tmp_path: Path) -> None:
    """A message rejected for its site header keeps its event id unseen; once archived,
    the archive must not answer "applied before" for that id either (a fingerprint hit
    for the corrected re-send is confirmed there), or the re-send would be dropped."""
    import msgspec

    stream = Stream()
    live = Live(tmp_path / "live.duckdb", tmp_path / "archive")
    bad = msgspec.structs.replace(stream.order("O-1"), site="wh 1")
    good = stream.order("O-2")
    live.apply([bad, good])
    live.archive()
    reader = live.store.archive
    assert reader is not None
    bad_id = msgspec.json.decode(bad.data)["id"]
    good_id = msgspec.json.decode(good.data)["id"]
    confirmed = live.store.read(lambda cur: reader.confirm_ids(cur, [bad_id, good_id]))
    assert confirmed == {good_id}
    live.store.close()
