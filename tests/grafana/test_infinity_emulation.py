"""The Grafana/Infinity emulation behaves like the real thing on known cases.

The macro cases are the ones Infinity's macro library is tested with (same instants,
same expected text), so the panel tests substitute exactly what Infinity would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.grafana.infinity import (
    REQUEST_HEADERS,
    FrameError,
    PanelTarget,
    TimeRange,
    build_request,
    go_json,
    panel_range,
    query_url,
    substitute_macros,
    to_frame,
    unsubstituted,
)

FROM = datetime.fromtimestamp(1594671549254 / 1000, UTC)
TO = datetime.fromtimestamp(1500549352001 / 1000, UTC)
RANGE = TimeRange(FROM, TO)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${__from}", "1594671549254"),
        ("${__from:date}", "2020-07-13T20:19:09.254Z"),
        ("${__from:date:seconds}", "1594671549"),
        ("${__from:date:iso}", "2020-07-13T20:19:09.254Z"),
        ("foo ${__from:date:YYYY:MM:DD:hh:mm} bar", "foo 2020:07:13:08:19 bar"),
        ("foo ${__from:date:YYYY:MM:DD:HH:mm} bar", "foo 2020:07:13:20:19 bar"),
        ("foo ${__to:date:YYYY-MM-DD:hh,mm} bar", "foo 2017-07-20:11,15 bar"),
        (
            "from ${__from:date:iso} to ${__to:date:iso}",
            "from 2020-07-13T20:19:09.254Z to 2017-07-20T11:15:52.001Z",
        ),
        ("${__timeFrom}", "1594671549254"),
        ("${__timeFrom:date} ${__timeFrom:date}", "2020-07-13T20:19:09.254Z " * 2),
        ("${__to:date:YYYY-MM-DD}", "2017-07-20"),
    ],
)
def test_time_macros_become_the_text_infinity_substitutes(text: str, expected: str) -> None:
    assert substitute_macros(text, RANGE) == expected.strip()


def test_unknown_macros_and_variables_are_reported_as_left_over() -> None:
    left = substitute_macros('{ a(x: "${__interval}", y: "$warehouse", z: $__from) }', RANGE)
    assert unsubstituted(left) == ["${__interval}", "$__from"]


def test_body_is_what_go_json_marshal_writes_for_query_and_null_variables() -> None:
    body = go_json({"query": 'query { a(x: "<&>") }', "variables": None})
    assert body == b'{"query":"query { a(x: \\"\\u003c\\u0026\\u003e\\") }","variables":null}'
    assert json.loads(body) == {"query": 'query { a(x: "<&>") }', "variables": None}


def test_relative_query_url_is_prefixed_with_the_datasource_url() -> None:
    assert query_url("http://gateway:8004", "/graphql") == "http://gateway:8004/graphql"
    assert query_url("http://gateway:8004", "http://gateway:8004/x") == "http://gateway:8004/x"


def _target(root: str, columns: list[tuple[str, str]]) -> dict[str, object]:
    return {
        "refId": "A",
        "url": "/graphql",
        "url_options": {"method": "POST", "body_graphql_query": '{ a(at: "${__to}") { n } }'},
        "root_selector": root,
        "columns": [{"selector": s, "text": s, "type": t} for s, t in columns],
    }


def test_request_carries_substituted_query_and_infinity_headers() -> None:
    dashboard = {"uid": "d", "time": {"from": "now-1h", "to": "now"}}
    panel_target = PanelTarget(dashboard, {"title": "p"}, _target("data.a", []))
    request = build_request(panel_target, "http://gw:8004", RANGE)
    assert request.method == "POST"
    assert request.url == "http://gw:8004/graphql"
    assert request.headers == REQUEST_HEADERS
    assert json.loads(request.body) == {
        "query": '{ a(at: "1500549352001") { n } }',
        "variables": None,
    }


def test_list_root_becomes_one_typed_row_per_item() -> None:
    answer = {"data": {"a": [{"t": "2026-11-25T10:00:00+00:00", "n": 3, "s": "x", "b": True}]}}
    target = _target(
        "data.a", [("t", "timestamp"), ("n", "number"), ("s", "string"), ("b", "boolean")]
    )
    frame = to_frame(answer, target)
    assert frame.rows == [
        {"t": datetime(2026, 11, 25, 10, tzinfo=UTC), "n": 3, "s": "x", "b": True}
    ]


def test_object_root_is_one_row_and_nested_selectors_reach_into_it() -> None:
    answer = {"data": {"a": {"total": 5.5, "buckets": {"over90": 1}}}}
    frame = to_frame(answer, _target("data.a", [("total", "number"), ("buckets.over90", "number")]))
    assert frame.rows == [{"total": 5.5, "buckets.over90": 1}]


def test_number_sent_as_a_string_is_not_a_number() -> None:
    with pytest.raises(FrameError, match="not a JSON number"):
        to_frame({"data": {"a": [{"n": "12.50"}]}}, _target("data.a", [("n", "number")]))


def test_time_without_offset_is_not_a_timestamp() -> None:
    with pytest.raises(FrameError, match="RFC 3339"):
        to_frame(
            {"data": {"a": [{"t": "2026-11-25T10:00:00"}]}}, _target("data.a", [("t", "timestamp")])
        )


def test_missing_root_is_an_error_not_an_empty_panel() -> None:
    with pytest.raises(FrameError, match="root_selector"):
        to_frame({"data": None, "errors": [{"message": "boom"}]}, _target("data.a", []))


def test_relative_time_and_time_shift_follow_grafana() -> None:
    now = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
    dashboard = {
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [{"name": "compare", "current": {"value": "7d"}}]},
    }
    assert panel_range(dashboard, {}, now) == TimeRange(
        datetime(2026, 11, 24, 15, 30, tzinfo=UTC), now
    )
    today = panel_range(dashboard, {"timeFrom": "now/d"}, now)
    assert today == TimeRange(datetime(2026, 11, 25, tzinfo=UTC), now)
    last_6h = panel_range(dashboard, {"timeFrom": "6h"}, now)
    assert last_6h == TimeRange(datetime(2026, 11, 25, 9, 30, tzinfo=UTC), now)
    shifted = panel_range(dashboard, {"timeFrom": "now/d", "timeShift": "$compare"}, now)
    assert shifted == TimeRange(
        datetime(2026, 11, 18, tzinfo=UTC), datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
    )
