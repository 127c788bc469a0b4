"""Which notices touch which live queries, data generations, and strawberry's own subscribe."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.live import BURST_SECONDS, Budget
from gateway.metrics import Metrics
from gateway.schema import Context, schema
from gateway.settings import Settings
from gateway.upstream import Charge, Upstream
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


# -- the live groups' budget of refreshing ----------------------------------------------

_RATIOS = st.sampled_from([0.0, 0.5, 2.0, 3.0, 100.0]) | st.floats(0, 100)
#: (seconds the group waits after it may refresh again, seconds the refresh takes, the
#: part of them it is charged: None for all)
_REFRESHES = st.lists(
    st.tuples(st.floats(0, 2), st.floats(0, 2), st.none() | st.floats(0, 1)),
    min_size=1,
    max_size=40,
)


@given(ratio=_RATIOS, refreshes=_REFRESHES)
@hsettings(max_examples=300, deadline=None)
def test_a_group_is_charged_at_most_its_share_of_the_time(
    ratio: float, refreshes: list[tuple[float, float, float | None]]
) -> None:
    # Scheduled as the hub does: the next refresh never starts before the rest is over.
    budget, share = Budget(), 1 / (1 + ratio)
    now = start = 1000.0
    charged = 0.0
    for wait, took, part in refreshes:
        started = now + wait
        now = started + took
        cost = None if part is None else part * took
        charged += took if cost is None else cost
        rest = budget.spend(ratio, started, now, cost)
        assert rest >= 0
        # Charged so far: its share of the time, the burst and what the refresh just run
        # was charged beyond what it earned while it ran.
        last = (took if cost is None else cost) - took * share
        assert charged <= share * (now - start) + BURST_SECONDS + last + 1e-9
        now += rest


@given(
    replies=st.lists(
        st.tuples(
            st.floats(0, 30),
            st.none() | st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=20,
    )
)
@hsettings(max_examples=300, deadline=None)
def test_what_replies_say_is_charged_within_their_round_trips(
    replies: list[tuple[float, float | None]],
) -> None:
    # Whatever a materializer says (nothing, NaN, infinities, below zero, beyond the
    # round trip), a reply is charged between nothing and its round trip, and exactly
    # what it says when that lies between.
    total = Charge()
    for elapsed, said in replies:
        one = Charge()
        one.answered(elapsed, said)
        assert 0.0 <= one.work <= elapsed
        if said is not None and 0.0 <= said <= elapsed:
            assert one.work == said
        else:
            assert one.work == elapsed
        total.answered(elapsed, said)
        total.waited += elapsed
    assert total.work <= total.waited * (1 + 1e-9)


def test_a_refresh_charged_less_than_it_took_rests_for_what_it_was_charged() -> None:
    # Half a second waiting on a reply, a tenth of it charged: within the burst.
    assert Budget().spend(2.0, 10.0, 10.5, cost=0.05) == 0.0
    # Without a burst, at ratio 3: a quarter of the 0.4 s earned while running, 0.3 s
    # charged, the difference earned back at a quarter second a second.
    budget = Budget(credit=0.0, at=5.0)
    assert budget.spend(3.0, 5.0, 5.4, cost=0.3) == pytest.approx((0.3 - 0.1) / 0.25)
    # Charged nothing, a refresh only earns.
    assert Budget(credit=0.0, at=0.0).spend(3.0, 0.0, 2.0, cost=0.0) == 0.0


def test_a_lone_slow_refresh_within_the_burst_does_not_rest() -> None:
    budget = Budget()
    assert budget.spend(2.0, 10.0, 10.0 + BURST_SECONDS) == 0.0
    # A third of the burst is left, and 0.05 s later a third of 0.05 s more; the next
    # refresh as slow takes two thirds of the burst: the rest earns back the difference
    # at a third of a second per second.
    rest = budget.spend(2.0, BURST_SECONDS + 10.05, 2 * BURST_SECONDS + 10.05)
    assert rest == pytest.approx((2 * BURST_SECONDS / 3 - BURST_SECONDS / 3 - 0.05 / 3) * 3)


def test_without_a_burst_the_rest_is_ratio_times_the_refresh() -> None:
    budget = Budget(credit=0.0, at=5.0)
    assert budget.spend(3.0, 5.0, 5.5) == pytest.approx(1.5)
    # Resting the whole 1.5 s brings the budget back to zero, not beyond.
    assert budget.spend(3.0, 7.0, 7.2) == pytest.approx(0.6)


def test_with_ratio_zero_a_group_never_rests() -> None:
    budget = Budget()
    assert [budget.spend(0.0, t, t + 5.0) for t in (0.0, 5.0, 10.0)] == [0.0, 0.0, 0.0]
