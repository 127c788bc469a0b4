"""What a set-based rebuild hands each aggregate's ``rebuild`` (materializer/rebuild.py):
the history up to a stream sequence as SQL relations, one per raw table.

Each aggregate module has a ``rebuild(history)`` next to its ``apply``: from the raw
rows of every event applied up to ``last_sequence`` it writes, with a few set-based
statements, the rows its tables hold after them, and the seen keys its ``apply`` would
have recorded that still decide anything (docs/OPERATIONS.md, "Rebuilding"). The
start-up self-check refuses an aggregate module without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb


@dataclass(frozen=True, slots=True)
class History:
    """The raw rows of every applied event up to ``last_sequence``, as relations."""

    cur: duckdb.DuckDBPyConnection
    #: Raw table (``archive.ROW_TABLES``: the raw tables, ``order_lines`` and
    #: ``rejected_events``) → a SQL relation with its columns and rows.
    rows: Mapping[str, str]
    #: A relation with one column ``sequence``: every stream message of the history
    #: (applied, rejected or duplicate).
    messages: str
    last_sequence: int
    #: How many archive runs the history came in (``pipeline_state.batches``).
    runs: int

    def of(self, table: str) -> str:
        """The relation of ``table``'s rows (a table not in the history fails loudly)."""
        return self.rows[table]

    def add_keys(self, select: str) -> None:
        """Insert seen keys: ``select`` yields ``key`` (the key string, e.g.
        ``'o:' || order_id``) and ``sequence`` (the event that created it)."""
        # The base holds a key's 128-bit hash as two halves (m0015): the view ``seen_keys``
        # reads them back as ``k``.
        self.cur.execute(
            "INSERT INTO seen_keys_base SELECT (k >> 64)::UBIGINT,"
            " (k & 18446744073709551615)::UBIGINT, sequence"
            f" FROM (SELECT md5_number(key) AS k, sequence FROM ({select}))"
        )
