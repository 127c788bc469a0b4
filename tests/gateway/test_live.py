"""Which notices touch which live queries, data generations, and strawberry's own subscribe."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest

from gateway.metrics import Metrics
from gateway.schema import Context, schema
from gateway.settings import Settings
from gateway.upstream import Upstream
from gateway.versions import Versions, relevant
from pulse_bi.contract import ChangeNotice, Changes
from tests.gateway.conftest import Canned

H10 = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)


def notice(
    version: int, aggregates: list[str], previous: int | None = None, **changes: Any
) -> ChangeNotice:
    return ChangeNotice(
        version=version,
        aggregates=aggregates,
        changes=Changes(**changes),
        previous_version=version - 1 if previous is None else previous,
    )


@pytest.mark.parametrize(
    ("field", "args", "change", "expected"),
    [
        ("salesByHour", {}, notice(2, ["sales"], sales_hours=[H10.isoformat()]), True),
        ("salesByHour", {}, notice(2, ["stock"], skus=["A"]), False),
        (
            "salesByHour",
            {"from": H10 + dt.timedelta(hours=1), "to": None},
            notice(2, ["sales"], sales_hours=[H10.isoformat()]),
            False,
        ),
        (
            "salesSummary",
            {"from": H10.replace(minute=30), "to": H10 + dt.timedelta(hours=1)},
            notice(2, ["sales"], sales_hours=[H10.isoformat()]),
            True,
        ),
        ("salesByHour", {"channel": "web"}, notice(2, ["sales"], channels=["store"]), False),
        ("salesByHour", {"channel": "web"}, notice(2, ["sales"], channels=["web"]), True),
        ("topProducts", {}, notice(2, ["catalog"], products=True), True),
        ("lowStock", {"warehouse": "WH-1"}, notice(2, ["stock"], warehouses=["WH-2"]), False),
        ("lowStock", {"warehouse": "WH-1"}, notice(2, ["stock"], warehouses=["WH-1"]), True),
        ("stockLevels", {"sku": "A"}, notice(2, ["stock"], skus=["B"], warehouses=["WH"]), False),
        ("stockLevels", {"sku": "A"}, notice(2, [], products=True), True),
        ("arAging", {}, notice(2, ["receivables"], receivables=True), True),
        ("arAging", {}, notice(2, ["sales"]), False),
        ("pipeline", {}, notice(2, ["pipeline"]), True),
        ("rejectedEvents", {}, notice(2, ["pipeline"]), True),
    ],
)
def test_notice_relevance(
    field: str, args: dict[str, Any], change: ChangeNotice, expected: bool
) -> None:
    versions = Versions()
    versions.observe(ChangeNotice(version=1, kind="heartbeat"))
    names = versions.observe(change)
    assert names is not None
    assert relevant(field, args, change, names) is expected


def test_generations_move_only_for_touched_aggregates() -> None:
    versions = Versions()
    assert versions.key(["sales"]) is None  # nothing heard yet: no caching
    versions.observe(ChangeNotice(version=5, kind="heartbeat"))
    sales, stock = versions.key(["sales"]), versions.key(["stock"])
    versions.observe(notice(6, ["sales", "pipeline"]))
    assert versions.key(["sales"]) != sales
    assert versions.key(["stock"]) == stock
    # Same version heartbeat: nothing changed.
    versions.observe(ChangeNotice(version=6, kind="heartbeat"))
    assert versions.key(["stock"]) == stock


@pytest.mark.parametrize(
    "missed",
    [
        notice(9, ["sales"], previous=7),  # previous_version is not the last one seen
        ChangeNotice(version=9, kind="heartbeat"),  # a heartbeat jumps ahead
    ],
)
def test_a_missed_notice_invalidates_everything(missed: ChangeNotice) -> None:
    versions = Versions()
    versions.observe(ChangeNotice(version=6, kind="heartbeat"))
    before = versions.key(["stock", "receivables"])
    assert versions.observe(missed) is None
    assert versions.key(["stock", "receivables"]) != before
    assert versions.gaps == 1


def test_silence_longer_than_the_ttl_disables_caching() -> None:
    versions = Versions(ttl=0.05)
    versions.observe(ChangeNotice(version=1, kind="heartbeat"))
    assert versions.key(["sales"]) is not None
    time.sleep(0.06)
    assert versions.key(["sales"]) is None


async def test_strawberry_subscribe_yields_current_then_changed_results(
    settings: Settings, canned: Canned
) -> None:
    versions = Versions()
    upstream = Upstream(settings, versions, Metrics())

    async def on_notice(nc: Any) -> None:
        from pulse_bi.contract import CHANGES_SUBJECT, notice_decoder

        async def handle(msg: Any) -> None:
            versions.observe(notice_decoder.decode(msg.data))

        await nc.subscribe(CHANGES_SUBJECT, cb=handle)
        await nc.flush()  # subscribed at the server before the first heartbeat

    upstream.on_connect(on_notice)
    await upstream.start()
    try:
        await canned.heartbeat_until_known(versions)
        stream = await schema.subscribe(
            "subscription { pipeline { lastSequence } }",
            context_value=Context(upstream, versions),
        )
        first = await asyncio.wait_for(stream.__anext__(), 5)  # type: ignore[union-attr]
        assert first.data == {"pipeline": {"lastSequence": 12}}
        canned.data["pipeline"] = {**canned.data["pipeline"], "last_sequence": 13}
        await canned.notify(["pipeline"])
        second = await asyncio.wait_for(stream.__anext__(), 5)  # type: ignore[union-attr]
        assert second.data == {"pipeline": {"lastSequence": 13}}
        await stream.aclose()  # type: ignore[union-attr]
    finally:
        await upstream.close()
