"""A batch of payloads decoded and validated by DuckDB's JSON functions, in SQL.

The direction issue 12 names for ingest (docs/BENCHMARKS.md, "The writer's 12 µs per
event, step by step"): the writer's per-event Python for decoding (``events.decode``)
and grouping is ~3 µs of its ~12 µs, all of it under the GIL. Here the payloads of a
batch go into DuckDB as one Arrow column and come out as typed tables, one per event
type, by SQL that runs outside the GIL. ``bench.bench_sql_decode`` measures it against
``events.decode`` on the same stream; nothing in the materializer uses it.

It is a *fast path*, not a second decoder: it accepts only what it can prove valid
under the contract (docs/EVENTS.md, "Limits"), and everything else would go to
``events.decode``, which alone says why a message is rejected. Per document it runs
``json_structure`` (the keys and JSON types; each distinct one is matched to an event
type once per batch, in any key order) and one ``from_json`` into typed values, then
checks the values. To stay provable it refuses more than the
contract does:

- any backslash (a JSON escape), control character, trailing comma (DuckDB's reader
  accepts those, and ``NaN`` and ``Infinity``; msgspec does not) or whitespace before
  a colon, or a document not starting with ``{`` and ending with ``}``;
- a number with an exponent, more than 2 decimals or 14 digits or more before the
  point: DuckDB reads a decimal number as a double, which is exact only up to 15
  significant digits, so money here has at most 13 digits before the point;
- a duplicate key (DuckDB keeps the first value, msgspec the last; found by counting
  ``":``, as ``json_structure`` merges them), a time not in the plain RFC 3339 form
  ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)``, a year at either edge of the window
  (``events._validated`` sends those to its slow path too).

``tests/test_bench_sql_decode.py`` checks with Hypothesis that whatever this accepts,
``events.decode`` accepts with the same values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import duckdb
import pyarrow as pa

from materializer import events
from materializer.limits import (
    DATE_MAX,
    DATE_MIN,
    MAX_ID_LENGTH,
    MAX_LINES,
    MAX_PAYLOAD_BYTES,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    TIME_MAX,
    TIME_MIN,
)

#: Documents this path leaves to ``events.decode`` (RE2, matched anywhere): an escape,
#: a control character, a trailing comma, whitespace before a colon, a number with an
#: exponent, with 3 decimals or more, or with 14 digits or more before the point. A
#: string that happens to hold such a pattern (``":12e"``) only costs a fallback.
GUARD = (
    r"\\|[[:cntrl:]]|,\s*[}\]]|\s:"
    r"|[:\[,]\s*-?[0-9.]+[eE]"
    r"|[:\[,]\s*-?[0-9]+\.[0-9]{3,}\s*[,}\]]"
    r"|[:\[,]\s*-?[0-9]{14,}"
)
_TIME = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_MONEY = r"-?[0-9]{1,13}(\.[0-9]{1,2})?"
#: Years strictly inside the window, as ``events._validated`` takes them on its fast path.
_YEARS = (TIME_MIN.year + 1, TIME_MAX.year - 2)

_INTEGER = ("UBIGINT", "BIGINT")


class Kind:
    """A kind of value: the JSON types ``json_structure`` may report for it, the type
    ``from_json`` reads it as, its check and its value (SQL over ``{v}``)."""

    def __init__(
        self, json_types: Sequence[str | None], sql_type: str, check: str, value: str = "{v}"
    ) -> None:
        self.json_types, self.sql_type, self.check, self.value = json_types, sql_type, check, value


_ID_CHECK = f"length({{v}}) BETWEEN 1 AND {MAX_ID_LENGTH}"
KINDS = {
    "id": Kind(["VARCHAR"], "VARCHAR", _ID_CHECK),
    "text": Kind(["VARCHAR"], "VARCHAR", f"length({{v}}) <= {MAX_TEXT_LENGTH}"),
    # A number's text is its double's shortest form: exact for the digits GUARD lets in.
    "money": Kind(
        [*_INTEGER, "DOUBLE", "VARCHAR"],
        "VARCHAR",
        f"regexp_full_match({{v}}, '{_MONEY}')",
        "CAST({v} AS DECIMAL(18, 2))",
    ),
    "quantity": Kind(_INTEGER, "BIGINT", f"{{v}} BETWEEN {-MAX_QUANTITY} AND {MAX_QUANTITY}"),
    "count": Kind(_INTEGER, "BIGINT", f"{{v}} BETWEEN 0 AND {MAX_QUANTITY}"),
    "positive": Kind(_INTEGER, "BIGINT", f"{{v}} BETWEEN 1 AND {MAX_QUANTITY}"),
    "date": Kind(
        ["VARCHAR"],
        "VARCHAR",
        f"regexp_full_match({{v}}, '{_DATE}')"
        f" AND TRY_CAST({{v}} AS DATE) >= DATE '{DATE_MIN.isoformat()}'"
        f" AND TRY_CAST({{v}} AS DATE) < DATE '{DATE_MAX.isoformat()}'",
        "CAST({v} AS DATE)",
    ),
    # Left out or null: None, as ``invoice.issued``'s ``order_id`` is in ``events``.
    "optional id": Kind(["VARCHAR", "NULL", None], "VARCHAR", f"({{v}} IS NULL OR {_ID_CHECK})"),
    "reason": Kind(
        ["VARCHAR"], "VARCHAR", "{v} IN ('receipt', 'shipment', 'adjustment', 'return')"
    ),
}

#: The data fields of every event type, in the contract's order (docs/EVENTS.md).
DATA: dict[str, list[tuple[str, str]]] = {
    "order.created": [
        ("order_id", "id"),
        ("customer_id", "id"),
        ("channel", "id"),
        ("total_amount", "money"),
        ("lines", "lines"),
    ],
    "order.cancelled": [("order_id", "id"), ("reason", "text")],
    "invoice.issued": [
        ("invoice_id", "id"),
        ("customer_id", "id"),
        ("amount", "money"),
        ("issued_on", "date"),
        ("due_date", "date"),
        ("order_id", "optional id"),
    ],
    "payment.received": [("payment_id", "id"), ("invoice_id", "id"), ("amount", "money")],
    "stock.moved": [
        ("sku", "id"),
        ("warehouse", "id"),
        ("quantity_delta", "quantity"),
        ("reason", "reason"),
    ],
    "product.updated": [
        ("sku", "id"),
        ("name", "text"),
        ("category", "text"),
        ("reorder_point", "count"),
        ("unit_cost", "money"),
    ],
    "customer.updated": [("customer_id", "id"), ("name", "text")],
}
LINE = [("sku", "id"), ("quantity", "positive"), ("unit_price", "money")]
#: The envelope's fields before ``data``; ``datacontenttype`` may be left out or null.
ENVELOPE = ["specversion", "id", "source", "type", "time", "datacontenttype"]


def _typed(event_type: str, leaf: str | None = None) -> str:
    """The ``from_json`` structure of one event type: each value as its kind's SQL type,
    or as ``leaf`` (``"VARCHAR"`` reads a ``json_structure``'s type names)."""

    def of(kind: str) -> str:
        return leaf or KINDS[kind].sql_type

    data: dict[str, Any] = {}
    for name, kind in DATA[event_type]:
        data[name] = [{n: of(k) for n, k in LINE}] if kind == "lines" else of(kind)
    envelope: dict[str, Any] = {f: "VARCHAR" for f in ENVELOPE}
    envelope["data"] = data
    return json.dumps(envelope, separators=(",", ":"))


def _names(json_types: Sequence[str | None]) -> str:
    return ", ".join(f"'{t}'" for t in json_types if t is not None)


def _shape(event_type: str) -> str:
    """The batch's distinct ``json_structure``s that fit ``event_type``, in any key order:
    every field of a JSON type its kind allows, and no key besides them (their count)."""
    checks = [f"s.{f} = 'VARCHAR'" for f in ENVELOPE[:-1]]
    checks.append("(s.datacontenttype IS NULL OR s.datacontenttype IN ('VARCHAR', 'NULL'))")
    keys = [f"{len(ENVELOPE)}", "(s.datacontenttype IS NOT NULL)::INTEGER"]
    for name, kind in DATA[event_type]:
        ref = f"s.data.{name}"
        if kind == "lines":
            line = " AND ".join(f"{ref}[1].{n} IN ({_names(KINDS[k].json_types)})" for n, k in LINE)
            checks.append(f"len({ref}) = 1 AND ({ref}[1] IS NULL OR ({line}))")
            keys += ["1", f"({ref}[1] IS NOT NULL)::INTEGER * {len(LINE)}"]
        elif None in KINDS[kind].json_types:
            checks.append(f"({ref} IS NULL OR {ref} IN ({_names(KINDS[kind].json_types)}))")
            keys.append(f"({ref} IS NOT NULL)::INTEGER")
        else:
            checks.append(f"{ref} IN ({_names(KINDS[kind].json_types)})")
            keys.append("1")
    checks.append(f"_colons(structure) = {' + '.join(keys)}")
    return f"""
SELECT structure, '{event_type}' AS type FROM (
  SELECT structure, from_json(structure, '{_typed(event_type, "VARCHAR")}') AS s FROM shapes
) WHERE {" AND ".join(checks)}
"""


def table(event_type: str) -> str:
    """The temporary table holding the proven events of one type."""
    return "fast_" + event_type.replace(".", "_")


LINES_TABLE = "fast_order_lines"

DOCS = f"""
CREATE OR REPLACE TEMP TABLE fast_docs AS
SELECT sequence, subject, doc, json_structure(doc)::VARCHAR AS structure,
  _colons(doc) AS colons
FROM payloads
WHERE strlen(doc) <= {MAX_PAYLOAD_BYTES}
  AND starts_with(doc, '{{') AND ends_with(doc, '}}')
  AND json_valid(doc)
  AND NOT regexp_matches(doc, '{GUARD}')
"""


#: The number of ``":`` in a text: each key of a document ends so (no escapes, no space
#: before a colon here); a string value may start so too, which only costs a fallback.
COLONS = """CREATE OR REPLACE TEMP MACRO _colons(text) AS
  (length(text) - length(replace(text, '":', ''))) // 2"""
STRUCTURES = "CREATE OR REPLACE TEMP TABLE shapes AS SELECT DISTINCT structure FROM fast_docs"
SHAPES = "CREATE OR REPLACE TEMP TABLE fast_shapes AS " + " UNION ALL ".join(
    _shape(t) for t in DATA
)


def _check(kind: str, value: str) -> str:
    return "(" + KINDS[kind].check.replace("{v}", value) + ")"


def _statement(event_type: str) -> str:
    subject = events.EVENT_TYPES[event_type].subject
    fields = DATA[event_type]
    checks = [
        "e.specversion = '1.0'",
        f"e.type = '{event_type}'",
        _check("id", "e.id"),
        _check("id", "e.source"),
        f"regexp_full_match(e.time, '{_TIME}')",
        f"CAST(left(e.time, 4) AS INTEGER) BETWEEN {_YEARS[0]} AND {_YEARS[1]}",
        "TRY_CAST(e.time AS TIMESTAMPTZ) IS NOT NULL",
    ]
    values = []
    # Every key once: a ``":`` ends each key (no whitespace before a colon here), and
    # one may open a string value too, which only costs a fallback.
    keys = f"{len(ENVELOPE)} + (structure LIKE '%\"datacontenttype\":%')::INTEGER + {len(fields)}"
    for name, kind in fields:
        ref = f"e.data.{name}"
        if kind == "lines":
            line = " AND ".join(_check(k, f"l.{n}") for n, k in LINE)
            checks.append(f"len({ref}) <= {MAX_LINES}")
            each = f"list_transform({ref}, lambda l: l IS NOT NULL AND {line})"
            checks.append(f"coalesce(list_bool_and({each}), true)")
            keys += f" + {len(LINE)} * len({ref})"
            values.append(f"{ref} AS {name}")
        else:
            if None in KINDS[kind].json_types:  # may be left out: a key only when there
                keys += f" - (structure NOT LIKE '%\"{name}\":%')::INTEGER"
            checks.append(_check(kind, ref))
            values.append(KINDS[kind].value.replace("{v}", ref) + f" AS {name}")
    checks.append(f"colons = {keys}")
    return f"""
CREATE OR REPLACE TEMP TABLE {table(event_type)} AS
WITH d AS MATERIALIZED (
  SELECT sequence, structure, colons, from_json(doc, '{_typed(event_type)}') AS e
  FROM fast_docs WHERE subject = '{subject}'
    AND structure IN (SELECT structure FROM fast_shapes WHERE type = '{event_type}')
)
SELECT sequence, e.id AS id, CAST(e.time AS TIMESTAMPTZ) AS time, {", ".join(values)}
FROM d WHERE {" AND ".join(checks)}
"""


STATEMENTS = [_statement(t) for t in DATA]
LINES = f"""
CREATE OR REPLACE TEMP TABLE {LINES_TABLE} AS
SELECT sequence, line_number, line.sku AS sku, line.quantity AS quantity,
  CAST(line.unit_price AS DECIMAL(18, 2)) AS unit_price
FROM (SELECT sequence, generate_subscripts(lines, 1) - 1 AS line_number, unnest(lines) AS line
      FROM {table("order.created")})
"""


def frame(subjects: Sequence[str], payloads: Sequence[bytes]) -> pa.Table | None:
    """The batch as DuckDB reads it (sequence = position from 1), or None when it holds
    invalid UTF-8, which Arrow refuses as text: the whole batch is then left to
    ``events.decode`` (hostile input, not traffic)."""
    try:
        docs = pa.array(payloads, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return None
    return pa.table(
        {
            "sequence": pa.array(range(1, len(payloads) + 1), pa.int64()),
            "subject": pa.array(subjects, pa.string()),
            "doc": docs,
        }
    )


def steps() -> list[tuple[str, str]]:
    """The statements of ``load`` with a label each, in order."""
    return [
        ("documents: size, guard, json_valid, json_structure", DOCS),
        ("the batch's distinct structures", STRUCTURES),
        ("which event type each structure fits", SHAPES),
        *((f"{t}: from_json and checks", s) for t, s in zip(DATA, STATEMENTS, strict=True)),
        ("order lines", LINES),
    ]


def load(
    conn: duckdb.DuckDBPyConnection,
    subjects: Sequence[str],
    payloads: Sequence[bytes],
    spent: dict[str, float] | None = None,
) -> bool:
    """Decode one batch in SQL into the ``fast_*`` tables; False if ``frame`` refused it.

    ``spent``: seconds of this thread's CPU added up by step (``steps``' labels, and
    ``"Arrow"`` for building the frame).
    """
    clock = time.thread_time
    started = clock()
    payload_frame = frame(subjects, payloads)
    if payload_frame is None:
        return False
    timings = spent if spent is not None else {}
    timings["Arrow"] = timings.get("Arrow", 0.0) + clock() - started
    conn.execute(COLONS)
    conn.register("payloads", payload_frame)
    try:
        for label, statement in steps():
            started = clock()
            conn.execute(statement)
            timings[label] = timings.get(label, 0.0) + clock() - started
    finally:
        conn.unregister("payloads")
    return True


def proven_count(conn: duckdb.DuckDBPyConnection) -> int:
    """How many events of the last ``load`` the SQL proved valid."""
    union = " UNION ALL ".join(f"SELECT count(*) AS n FROM {table(t)}" for t in DATA)
    ((count,),) = conn.execute(f"SELECT sum(n)::BIGINT FROM ({union})").fetchall()
    return int(count)


def proven(conn: duckdb.DuckDBPyConnection) -> dict[int, tuple[Any, ...]]:
    """Every proven event of the last ``load`` by sequence, as ``as_tuple`` gives it."""
    lines: dict[int, list[tuple[Any, ...]]] = {}
    for sequence, _, *line in conn.execute(
        f"SELECT * FROM {LINES_TABLE} ORDER BY sequence, line_number"
    ).fetchall():
        lines.setdefault(sequence, []).append(tuple(line))
    found: dict[int, tuple[Any, ...]] = {}
    for event_type, fields in DATA.items():
        for row in conn.execute(f"SELECT * FROM {table(event_type)}").fetchall():
            sequence, event_id, time, *values = row
            data = tuple(
                lines.get(sequence, []) if kind == "lines" else value
                for (_, kind), value in zip(fields, values, strict=True)
            )
            found[sequence] = (event_type, event_id, time.astimezone(UTC), data)
    return found


def as_tuple(event: events.Event) -> tuple[Any, ...]:
    """An event from ``events.decode`` in ``proven``'s form, to compare the two."""
    data: list[Any] = []
    for name, kind in DATA[event.type]:
        value = getattr(event.data, name)
        if kind == "lines":
            value = [(line.sku, line.quantity, line.unit_price) for line in value]
        data.append(value)
    return (event.type, event.id, event.time.astimezone(UTC), tuple(data))
