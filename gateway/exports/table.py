"""A named query's rows as a flat table: columns from the spec's row struct (docs/EXPORTS.md).

Every column has a kind taken from the row field's type (``Money`` -> exact decimal, a
datetime -> UTC time, ...). A row field holding a list of rows (``ar_aging``'s
``by_customer``, ``pipeline``'s ``gaps``) is flattened: one output row per item, the
parent's own columns repeated on each, the item's columns named ``<list>.<field>``; a
parent whose list is empty gives one row with those columns empty.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec

from pulse_bi.contract import BigInt, Money, QuerySpec
from pulse_bi.contract.spec import Row, unwrap

Kind = Literal["money", "time", "date", "int", "bool", "text"]

#: Words whose humanized form is all capitals.
_ACRONYMS = {"id": "ID", "sku": "SKU", "ar": "AR"}


@dataclass(frozen=True, slots=True)
class Column:
    """One exported column."""

    #: Wire name (``net_revenue``; ``by_customer.total`` for a flattened list's field).
    name: str
    #: Human-readable header (``Net revenue``; ``By customer: Total``).
    header: str
    kind: Kind


def humanize(wire_name: str) -> str:
    """``average_order_value`` -> ``Average order value``; ``customer_id`` -> ``Customer ID``."""
    words = [w for w in wire_name.split("_") if w]
    if not words:
        return wire_name
    shown: list[str] = []
    for word in words:
        if word.isdigit() and shown and shown[-1][-1:].isdigit():
            shown[-1] += "-" + word  # days_1_30 -> Days 1-30
        else:
            shown.append(_ACRONYMS.get(word, word))
    first = shown[0]
    shown[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(shown)


def _kind(annotation: Any) -> Kind | None:
    base, _, _ = unwrap(annotation)
    if base is Money:
        return "money"
    if base is dt.datetime:
        return "time"
    if base is dt.date:
        return "date"
    if base is bool:
        return "bool"
    if base in (int, BigInt):
        return "int"
    if base is str:
        return "text"
    return None


def _nested(annotation: Any) -> type[Row] | None:
    base, _, _ = unwrap(annotation)
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        if isinstance(item, type) and issubclass(item, Row):
            return item
    return None


@dataclass(frozen=True, slots=True)
class Table:
    """How one spec's rows become flat tuples."""

    columns: tuple[Column, ...]
    #: Python field names of the row's own columns, in order.
    fields: tuple[str, ...]
    #: The one nested list field (python name) and its row's field names, if any.
    nested: str | None
    nested_fields: tuple[str, ...]

    def rows(self, data: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        """Flat tuples of typed rows, in column order."""
        fields, nested, inner = self.fields, self.nested, self.nested_fields
        for row in data:
            own = tuple(getattr(row, name) for name in fields)
            if nested is None:
                yield own
                continue
            items = getattr(row, nested) or ()
            if not items:
                yield own + (None,) * len(inner)
            for item in items:
                yield own + tuple(getattr(item, name) for name in inner)


def _row_columns(row: type[Row], prefix: str = "") -> tuple[list[Column], list[str]]:
    columns: list[Column] = []
    names: list[str] = []
    for info in msgspec.structs.fields(row):
        kind = _kind(info.type)
        if kind is None:
            continue
        wire = info.encode_name
        header = humanize(wire)
        if prefix:
            header = f"{humanize(prefix)}: {header}"
            wire = f"{prefix}.{wire}"
        columns.append(Column(wire, header, kind))
        names.append(info.name)
    return columns, names


def table(spec: QuerySpec) -> Table:  # type: ignore[type-arg]
    """The flat table of a spec's rows (at most one nested list is flattened)."""
    row = spec.row
    columns, fields = _row_columns(row)
    nested_fields: list[str] = []
    nested: str | None = None
    for info in msgspec.structs.fields(row):
        item = _nested(info.type)
        if item is None:
            continue
        if nested is not None:
            raise TypeError(f"{spec.name}: more than one nested list cannot be flattened")
        if _kind(info.type) is None and item is not None:
            nested = info.name
            inner_columns, nested_fields = _row_columns(item, info.encode_name)
            columns.extend(inner_columns)
    unknown = [
        info.name
        for info in msgspec.structs.fields(row)
        if _kind(info.type) is None and _nested(info.type) is None
    ]
    if unknown:
        raise TypeError(f"{spec.name}: fields {unknown} have no export column type")
    return Table(tuple(columns), tuple(fields), nested, tuple(nested_fields))


def as_text(kind: Kind, value: Any) -> str:
    """A cell as CSV text: money ``12.30``, times ISO-8601 UTC ``+00:00``, empty for null."""
    if value is None:
        return ""
    if kind == "money":
        return str(Decimal(value))
    if kind == "time":
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC).isoformat()
    if kind == "date":
        return str(value.isoformat())
    if kind == "bool":
        return "true" if value else "false"
    return str(value)
