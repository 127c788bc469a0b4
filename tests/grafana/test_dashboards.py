"""Static checks of the dashboard JSON: what Grafana needs, and queries the gateway accepts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from graphql import OperationDefinitionNode, OperationType, get_named_type, parse, validate

from tests.grafana.infinity import (
    COLUMN_TYPES,
    DASHBOARD_DIR,
    PLUGIN_ID,
    ROOT,
    PanelTarget,
    dashboard_range,
    iter_panels,
    iter_targets,
    load_dashboards,
    now_utc,
    panel_range,
    substitute_macros,
    unsubstituted,
)
from tests.grafana.schema import (
    COMPATIBLE,
    TIME_SCALARS,
    gateway_schema,
    resolve_column,
    resolve_path,
    root_fields,
)
from tests.grafana.test_provisioning import EXPECTED_UIDS

DASHBOARDS = load_dashboards()
TARGETS = list(iter_targets(DASHBOARDS))
DATASOURCE = {"type": PLUGIN_ID, "uid": "pulse-bi-gateway"}


def _ids(targets: list[PanelTarget]) -> list[str]:
    return [t.name for t in targets]


def _substituted(panel_target: PanelTarget) -> str:
    now = now_utc()
    time_range = panel_range(panel_target.dashboard, panel_target.panel, now)
    return substitute_macros(panel_target.document, time_range)


def test_the_three_seed_dashboards_exist_one_file_each() -> None:
    assert set(DASHBOARDS) == EXPECTED_UIDS
    assert len(list(DASHBOARD_DIR.glob("*.json"))) == len(EXPECTED_UIDS)


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_dashboard_refreshes_itself_and_is_read_only(uid: str) -> None:
    dashboard = DASHBOARDS[uid]
    assert re.fullmatch(r"\d+[smh]", dashboard["refresh"]), "kiosk screens refresh on their own"
    assert dashboard["editable"] is False
    assert dashboard["title"] and dashboard["description"]
    time_range = dashboard_range(dashboard, now_utc())
    assert time_range.start < time_range.end


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_panels_have_unique_ids_and_tile_the_24_column_grid_without_overlap(uid: str) -> None:
    panels = list(iter_panels(DASHBOARDS[uid]))
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        here = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not here & cells, f"{panel['title']!r} overlaps another panel"
        cells |= here


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_every_panel_queries_the_provisioned_gateway_datasource(uid: str) -> None:
    for panel in iter_panels(DASHBOARDS[uid]):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


@pytest.mark.parametrize("panel_target", TARGETS, ids=_ids(TARGETS))
def test_target_is_an_infinity_graphql_post_with_root_selector_and_typed_columns(
    panel_target: PanelTarget,
) -> None:
    target = panel_target.target
    assert target["type"] == "graphql"
    assert target["source"] == "url"
    assert target["parser"] == "backend", "backend parsing: server-side, cacheable, alertable"
    assert target["url"] == "/graphql", "relative: Infinity prefixes the datasource URL"
    options = target["url_options"]
    assert options["method"] == "POST"
    assert options["body_type"] == "graphql"
    assert not options.get("body_graphql_variables"), "variables stay null"
    assert target["root_selector"].startswith("data.")
    assert target["columns"], "untyped columns would be guessed"
    for column in target["columns"]:
        assert column["type"] in COLUMN_TYPES
        assert column["selector"] and column["text"]
    texts = [c["text"] for c in target["columns"]]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("panel_target", TARGETS, ids=_ids(TARGETS))
def test_query_is_one_valid_query_operation_once_macros_are_substituted(
    panel_target: PanelTarget,
) -> None:
    query = _substituted(panel_target)
    assert not unsubstituted(query), "only Infinity's time macros may appear in a query"
    document = parse(query)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert [op.operation for op in operations] == [OperationType.QUERY]
    errors = validate(gateway_schema(), document)
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("panel_target", TARGETS, ids=_ids(TARGETS))
def test_query_takes_every_time_argument_from_the_dashboard_time_range(
    panel_target: PanelTarget,
) -> None:
    schema = gateway_schema()
    assert schema.query_type is not None
    for node in root_fields(panel_target.document):
        field = schema.query_type.fields[node.name.value]
        time_args = {
            name
            for name, arg in field.args.items()
            if get_named_type(arg.type).name in TIME_SCALARS
        }
        given = {a.name.value: a for a in node.arguments or ()}
        missing = time_args - set(given)
        assert not missing, f"{node.name.value}: {missing} left to the server's default"
        for name in time_args:
            location = given[name].value.loc
            assert location is not None
            literal = panel_target.document[location.start : location.end]
            assert literal.startswith('"${__'), f"{name}: {literal} is not the time range"


@pytest.mark.parametrize("panel_target", TARGETS, ids=_ids(TARGETS))
def test_root_selector_and_columns_read_selected_fields_of_a_matching_type(
    panel_target: PanelTarget,
) -> None:
    target = panel_target.target
    query = _substituted(panel_target)
    assert resolve_path(query, target["root_selector"]) is not None, "root not selected"
    for column in target["columns"]:
        selected = resolve_column(query, target["root_selector"], column["selector"])
        assert selected is not None, f"column {column['selector']!r} is not selected"
        assert not selected.is_list, f"column {column['selector']!r} is a list"
        assert selected.type_name in COMPATIBLE[column["type"]], (
            f"column {column['text']!r}: {column['type']} cannot read {selected.type_name}"
        )


def _field_names(panel: dict[str, Any]) -> set[str]:
    """Columns of the panel's queries plus the fields its transformations add."""
    names = {c["text"] for t in panel["targets"] for c in t["columns"]}
    for transformation in panel.get("transformations", []):
        options = transformation.get("options", {})
        if options.get("alias"):
            names.add(options["alias"])
        if transformation["id"] == "groupBy":
            # Grafana names an aggregate "<field> (<calculation>)".
            for name, spec in options["fields"].items():
                names.update(f"{name} ({calc})" for calc in spec.get("aggregations", []))
    return names


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, p) for uid, d in DASHBOARDS.items() for p in iter_panels(d)]


@pytest.mark.parametrize(
    "panel", [p for _, p in _panels()], ids=[f"{u}/{p['title']}" for u, p in _panels()]
)
def test_overrides_and_field_choices_name_fields_the_panel_has(panel: dict[str, Any]) -> None:
    names = _field_names(panel)
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override["matcher"]["id"] == "byName":
            assert override["matcher"]["options"] in names, override["matcher"]
    pattern = panel.get("options", {}).get("reduceOptions", {}).get("fields", "")
    if pattern:
        assert pattern.startswith("/") and pattern.endswith("/")
        assert any(re.search(pattern[1:-1], name) for name in names), pattern
    for transformation in panel.get("transformations", []):
        options = transformation.get("options", {})
        mentioned = set(options.get("fields", {}))
        mentioned |= set(options.get("reduce", {}).get("include", []))
        for condition in options.get("filters", []):
            mentioned.add(condition["fieldName"])
        assert mentioned <= names, mentioned - names


def test_comparison_panel_shifts_today_by_the_chosen_period() -> None:
    dashboard = DASHBOARDS["sales-revenue-001"]
    panels = {p["title"]: p for p in iter_panels(dashboard)}
    now = now_utc()
    today = panel_range(dashboard, panels["Today so far"], now)
    earlier = panel_range(dashboard, panels["Same time, $compare earlier"], now)
    assert today.start == now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert today.end == now
    assert today.start - earlier.start == today.end - earlier.end
    assert (today.end - earlier.end).days in (1, 7)


def test_dashboards_doc_names_every_dashboard_with_its_urls() -> None:
    doc = (ROOT / "grafana" / "DASHBOARDS.md").read_text()
    for uid in EXPECTED_UIDS:
        assert f"/d/{uid}" in doc
        assert re.search(rf"/d/{uid}[^\s)`]*\?[^\s)`]*kiosk", doc), f"no kiosk URL for {uid}"


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_dashboard_fits_a_1080p_screen_in_kiosk_mode_without_scrolling(uid: str) -> None:
    # Grafana's grid rows are 30 px plus an 8 px margin; kiosk mode keeps ~16 px padding.
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in iter_panels(DASHBOARDS[uid]))
    assert bottom * 38 + 16 <= 1080, f"{bottom} grid rows need scrolling on a TV"
