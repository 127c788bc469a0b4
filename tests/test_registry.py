"""The registry is the one declaration: everything derived from it agrees, and a
forgotten piece is an error at start, never a silent gap (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.execution import field_reads
from gateway.live import _CLOCK_FIELDS
from gateway.versions import TRACKED, reads, relevant, spec_relevant
from materializer import aggregates, db, queries, selfcheck
from materializer.aggregates import staged
from materializer.queries import BadQuery, parse
from materializer.store import Store
from pulse_bi.contract import (
    AGGREGATES,
    QUERIES,
    TOPICS,
    ChangeNotice,
    Changes,
    QuerySpec,
    docs,
    registry,
)
from pulse_bi.contract.spec import Params

ROOT = Path(__file__).resolve().parents[1]


def test_the_materializer_self_check_passes_on_a_new_file(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "pulse.duckdb")
    try:
        with db.cursor(store.conn) as cur:
            assert selfcheck.problems(cur) == []
    finally:
        store.close()


def test_a_declared_query_without_sql_and_an_undeclared_one_are_reported() -> None:
    found = dict(queries.implementations())
    found["secret_query"] = found.pop("sales_by_channel")
    problems = queries.check_registry(found=found)
    assert "query sales_by_channel has no SQL function" in problems
    assert "query secret_query is not declared" in problems


def test_a_raw_table_nobody_declares_stops_the_materializer(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    conn = db.connect(path)
    try:
        db.apply_migrations(conn, path)
        conn.execute("CREATE TABLE return_events (sequence BIGINT, event_id VARCHAR)")
    finally:
        conn.close()
    with pytest.raises(selfcheck.RegistryMismatch, match="return_events holds event ids"):
        Store.open(path)


def test_a_declared_raw_table_missing_from_the_file_is_reported(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "pulse.duckdb"))
    try:
        db.apply_migrations(conn, tmp_path / "pulse.duckdb")
        # A raw table is a view of its base and staged rows (m0013).
        conn.execute("DROP VIEW stock_events")
        conn.execute(
            "CREATE VIEW stock_events AS SELECT * RENAME (event_id AS id) FROM stock_events_base"
        )
        problems = selfcheck.raw_table_problems(conn.cursor())
    finally:
        conn.close()
    assert problems == ["raw table stock_events is declared but has no event_id column"]


def test_a_raw_table_without_its_base_is_reported(tmp_path: Path) -> None:
    """A raw table kept whole, as before migration 13: the store would stage its rows in
    ``raw_staged`` and fold them into a base that is not there."""
    conn = duckdb.connect(str(tmp_path / "pulse.duckdb"))
    try:
        db.apply_migrations(conn, tmp_path / "pulse.duckdb")
        conn.execute("DROP VIEW stock_events")
        conn.execute("ALTER TABLE stock_events_base RENAME TO stock_events")
        problems = selfcheck.raw_table_problems(conn.cursor())
    finally:
        conn.close()
    assert problems == [
        "raw table stock_events has no base table stock_events_base (docs/OPERATIONS.md,"
        " 'Staged raw rows')"
    ]


def test_staged_slots_that_do_not_read_back_as_the_base_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write path's slots, the staged view and the base must agree (m0014): a
    staged row would otherwise read back, or fold, into the wrong column or type."""
    conn = duckdb.connect(str(tmp_path / "pulse.duckdb"))
    try:
        db.apply_migrations(conn, tmp_path / "pulse.duckdb")
        assert selfcheck.staged_problems(conn.cursor()) == []
        # The view reads a line's number as a BIGINT, not the base's INTEGER.
        conn.execute("DROP VIEW order_lines_staged")
        conn.execute(
            "CREATE VIEW order_lines_staged AS SELECT sequence AS order_sequence,"
            " int_1 AS line_no, hour, text_1 AS order_id, text_2 AS sku, int_2 AS quantity,"
            " amount AS unit_price, site FROM raw_staged WHERE raw_table = 'order_lines'"
        )
        slots = {**staged.SLOTS, "stock_events": {**staged.SLOTS["stock_events"]}}
        slots["stock_events"]["warehouse"] = "text_9"  # a slot raw_staged lacks
        slots["customer_events"] = {
            k: v for k, v in staged.SLOTS["customer_events"].items() if k != "name"
        }
        monkeypatch.setattr(staged, "SLOTS", slots)
        problems = selfcheck.staged_problems(conn.cursor())
    finally:
        conn.close()
    assert len(problems) == 3
    (view,) = [p for p in problems if p.startswith("order_lines_staged does not read")]
    assert "('line_no', 'BIGINT')" in view
    assert any(
        p.startswith("staged.SLOTS['stock_events'] names slots raw_staged lacks: ['text_9']")
        for p in problems
    )
    assert any(p.startswith("staged.SLOTS['customer_events'] names ['sequence'") for p in problems)


def test_every_event_type_is_consumed_by_exactly_one_aggregate() -> None:
    assert aggregates.check_registry() == []
    assert tuple(module.SPEC for module in aggregates.AGGREGATES) == AGGREGATES
    consumed = [t for spec in AGGREGATES for t in spec.event_types]
    assert len(consumed) == len(set(consumed))


def test_every_query_reads_known_topics_and_the_gateway_tracks_them_all() -> None:
    assert set(TRACKED) == set(TOPICS)
    for spec in QUERIES:
        assert set(spec.reads) <= set(TOPICS), spec.name
        assert field_reads(spec.field) == spec.reads
        assert reads(spec.name) == spec.reads


def test_unknown_names_fail_closed() -> None:
    # Never cached, always refreshed, stale on any change.
    assert reads("not_a_query") is None
    assert field_reads("notAField") == TRACKED
    assert field_reads("__schema") == ()
    notice = ChangeNotice(version=2, aggregates=["stock"], previous_version=1)
    assert relevant("notAField", {}, notice, {"stock"}) is True


def test_clock_fields_come_from_the_specs() -> None:
    assert _CLOCK_FIELDS["salesByHour"] == ("from", "to")
    assert _CLOCK_FIELDS["arAging"] == ("asOf",)
    assert _CLOCK_FIELDS["salesByChannel"] == ("from", "to")
    assert "stockLevels" not in _CLOCK_FIELDS


def test_a_spec_naming_an_unknown_parameter_or_topic_is_refused() -> None:
    base: dict[str, Any] = {
        "name": "x",
        "field": "x",
        "params": registry.WarehouseFilter,
        "result": list[registry.StockLevelRow],
        "description": "",
        "doc": "",
    }
    with pytest.raises(TypeError, match="not parameters"):
        QuerySpec(**base, reads=("stock",), filters={"sku": "skus"})
    with pytest.raises(TypeError, match="reads"):
        QuerySpec(**base, reads=("stok",))
    with pytest.raises(TypeError, match="Changes flags"):
        QuerySpec(**base, reads=("stock",), always=("skus",))


def test_docs_api_md_holds_the_generated_named_query_table() -> None:
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    assert docs.documented(text) == docs.block(), (
        "docs/API.md is stale: run `python -m pulse_bi.contract.docs --write`"
    )
    for spec in QUERIES:
        assert f"| `{spec.name}` |" in docs.table()


def test_changes_normalize_and_merge_every_key_once() -> None:
    a = Changes(skus=["B", "A", "B"], receivables=True)
    b = Changes(skus=["C"], warehouses=["W1"], products=True)
    assert a.normalized() == Changes(skus=["A", "B"], receivables=True)
    assert a.merged(b) == Changes(
        skus=["A", "B", "C"], warehouses=["W1"], receivables=True, products=True
    )
    assert b.topics() == {"products"}
    assert Changes(customers=["C-1"]).topics() == {"customers"}


def _notice(**changes: Any) -> ChangeNotice:
    return ChangeNotice(version=2, previous_version=1, changes=Changes(**changes))


@pytest.mark.parametrize(
    ("spec", "args", "changes", "names", "expected"),
    [
        (registry.SALES_BY_CHANNEL, {"channel": "web"}, {"channels": ["pos"]}, {"sales"}, False),
        (registry.SALES_BY_CHANNEL, {"channel": "web"}, {"channels": ["web"]}, {"sales"}, True),
        (registry.SALES_BY_CHANNEL, {}, {}, {"stock"}, False),
        (registry.STOCK_LEVELS, {"sku": "A"}, {"skus": ["B"], "products": True}, {"stock"}, True),
        (
            registry.STOCK_MOVEMENTS,
            {"sku": "A"},
            {"skus": ["B"], "products": True},
            {"stock"},
            False,
        ),
        (
            registry.OVERDUE_INVOICES,
            {"customerId": "C1"},
            {"customers": ["C2"]},
            {"customers"},
            False,
        ),
        (
            registry.OVERDUE_INVOICES,
            {"customerId": "C1"},
            {"customers": ["C2"], "receivables": True},
            {"receivables"},
            True,
        ),
    ],
)
def test_relevance_follows_the_spec(
    spec: QuerySpec,  # type: ignore[type-arg]
    args: dict[str, Any],
    changes: dict[str, Any],
    names: set[str],
    expected: bool,
) -> None:
    assert spec_relevant(spec, args, _notice(**changes), names) is expected


def test_sales_windows_outside_the_changed_hours_are_not_relevant() -> None:
    start = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
    args = {"from": start, "to": start + dt.timedelta(hours=2)}
    inside = _notice(sales_hours=["2026-11-25T11:00:00+00:00"])
    outside = _notice(sales_hours=["2026-11-25T12:00:00+00:00"])
    assert spec_relevant(registry.SALES_BY_CHANNEL, args, inside, {"sales"})
    assert not spec_relevant(registry.SALES_BY_CHANNEL, args, outside, {"sales"})


# Parameters: any JSON object in gives the spec's struct or a BadQuery, nothing else.

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = sorted(
    {f.encode_name for spec in QUERIES for f in msgspec.structs.fields(spec.params)} | {"x", ""}
)


@given(
    spec=st.sampled_from(QUERIES),
    raw=st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), _JSON, max_size=6),
)
def test_parameters_parse_to_the_struct_or_a_clear_bad_query(
    spec: QuerySpec,  # type: ignore[type-arg]
    raw: dict[str, Any],
) -> None:
    try:
        params = parse(spec, raw)
    except BadQuery as exc:
        assert str(exc).startswith(f"{spec.name}: ")
        return
    assert isinstance(params, Params)
    assert isinstance(params, spec.params)


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+01:00", 2**70, -(2**70), "9999-12-31T23:59:59-05:00", "", "\u0663"],
)
def test_extreme_times_are_bad_queries_not_crashes(value: Any) -> None:
    params = {"from": value, "to": "2026-11-26T00:00:00+00:00"}
    with pytest.raises(BadQuery, match="sales_by_channel: parameter 'from'"):
        parse(registry.SALES_BY_CHANNEL, params)


def test_an_aggregate_module_without_rebuild_stops_the_materializer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from materializer.aggregates import stock

    monkeypatch.delattr(stock, "rebuild")
    assert "aggregate module materializer.aggregates.stock has no rebuild()" in (
        aggregates.check_registry()
    )
