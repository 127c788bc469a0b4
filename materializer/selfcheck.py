"""Start-up self-check: the registry, the code and the file agree (docs/ARCHITECTURE.md).

Every declared query has its SQL function and nothing undeclared is served; every event
type the decoder knows is consumed by exactly one aggregate; every raw table an aggregate
declares exists with an ``event_id`` column and a base table, and its staged rows read as
the base's columns from the slots the write path fills (``aggregates/staged.py``); no
table that holds applied event ids is left off the declarations (the store looks
re-delivered events up in exactly those).
The materializer refuses to start on a problem; a test runs the same check.
"""

from __future__ import annotations

import duckdb

from materializer import aggregates, queries
from materializer.aggregates import staged
from pulse_bi.contract.registry import RAW_TABLES

#: Tables with an ``event_id`` column that do not hold applied events: a rejected
#: message is stored every time it comes (docs/EVENTS.md, "Bad events"). And the parts
#: of the raw tables (``staged``): each raw table is a view of its base and its staged
#: rows, and the view is what the store reads.
NOT_APPLIED = frozenset(
    {
        "rejected_events",
        staged.STAGED,
        *(staged.base(table) for table in staged.TABLES),
        *(staged.view(table) for table in staged.TABLES),
    }
)


class RegistryMismatch(RuntimeError):
    """The registry and the code or the file disagree; the message lists how."""


def raw_table_problems(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Declared raw tables missing from the file, undeclared ones present in it."""
    rows = cur.execute(
        "SELECT table_name FROM duckdb_columns() WHERE column_name = 'event_id'"
        " AND database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    with_ids = {name for (name,) in rows} - NOT_APPLIED
    problems = [
        f"raw table {t} is declared but has no event_id column"
        for t in RAW_TABLES
        if t not in with_ids
    ]
    problems += [
        f"table {t} holds event ids but no aggregate declares it in raw_tables"
        for t in sorted(with_ids - set(RAW_TABLES))
    ]
    bases = {
        name
        for (name,) in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
    }
    problems += [
        f"raw table {t} has no base table {staged.base(t)} (docs/OPERATIONS.md, 'Staged raw rows')"
        for t in staged.TABLES
        if staged.base(t) not in bases
    ]
    return problems + staged_problems(cur)


def staged_problems(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Where a raw table's staged rows would not read back as its base's columns: its view
    ``<t>_staged`` missing or of other columns, or ``staged.SLOTS`` naming other columns
    than the base's, or slots ``raw_staged`` lacks."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, name, kind in cur.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns()"
        " WHERE database_name = current_database() AND schema_name = 'main'"
        " ORDER BY table_name, column_index"
    ).fetchall():
        columns.setdefault(table, []).append((name, kind))
    held = {name for name, _ in columns.get(staged.STAGED, [])}
    where = "(docs/OPERATIONS.md, 'Staged raw rows')"
    problems = []
    for t in staged.TABLES:
        base, read = columns.get(staged.base(t)), columns.get(staged.view(t))
        if base is None:
            continue  # reported above
        if read != base:
            problems.append(
                f"{staged.view(t)} does not read {t}'s columns {[n for n, _ in base]} as their"
                f" types: {read or 'no such view'} {where}"
            )
        if t in staged.DERIVED:
            continue  # its view computes its rows; nothing is written to slots
        slots = staged.SLOTS.get(t, {})
        if list(slots) != [n for n, _ in base]:
            problems.append(
                f"staged.SLOTS[{t!r}] names {list(slots)}, not {t}'s columns"
                f" {[n for n, _ in base]} {where}"
            )
        lacking = sorted({slot for slot in slots.values() if slot not in held})
        if lacking:
            problems.append(
                f"staged.SLOTS[{t!r}] names slots {staged.STAGED} lacks: {lacking} {where}"
            )
    return problems


def problems(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Everything that disagrees, in words."""
    return [*queries.check_registry(), *aggregates.check_registry(), *raw_table_problems(cur)]


def check(cur: duckdb.DuckDBPyConnection) -> None:
    """Raise ``RegistryMismatch`` when anything disagrees."""
    found = problems(cur)
    if found:
        raise RegistryMismatch("the registry does not match the code: " + "; ".join(found))
