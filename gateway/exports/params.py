"""An export's parameters from URL query parameters, by the spec's params struct.

Names are the struct's wire names (``from``, ``as_of``, ``customer_id``); values are
parsed by field type (times ISO-8601 with an offset or epoch milliseconds, dates
``YYYY-MM-DD``, ASCII integers within the field's bounds). ``offset`` and ``limit``, where
the query has them, mean the first row and the most rows of the whole export, not a
page (docs/EXPORTS.md, "Parameters").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from graphql import GraphQLError

from gateway.errors import BadRequest
from gateway.limits import MAX_TEXT_ARGUMENT
from gateway.scalars import parse_date, parse_datetime
from gateway.schema.base import window
from pulse_bi.contract import QuerySpec
from pulse_bi.contract.spec import describe_type, unwrap

_INTEGER = re.compile(r"-?[0-9]{1,19}")
_PAGING = ("offset", "limit")
MAX_OFFSET = 2**62


@dataclass(frozen=True, slots=True)
class ExportParams:
    """What to export: the query's own parameters, and which slice of all its rows."""

    spec: QuerySpec  # type: ignore[type-arg]
    #: The params struct's fields (python names) other than offset and limit.
    values: dict[str, Any] = field(default_factory=dict)
    offset: int = 0
    #: Most rows to export; None: all of them (up to the export row cap).
    limit: int | None = None

    @property
    def paged(self) -> bool:
        """Whether the query takes offset and limit (so the export pages through it)."""
        names = {f.name for f in msgspec.structs.fields(self.spec.params)}
        return set(_PAGING) <= names

    def struct(self, offset: int | None = None, limit: int | None = None) -> Any:
        """The query's params struct for one request (one page when offset/limit given)."""
        values = dict(self.values)
        if offset is not None:
            values["offset"] = offset
        if limit is not None:
            values["limit"] = limit
        return self.spec.params(**values)


def parse_export_params(
    spec: QuerySpec,  # type: ignore[type-arg]
    items: Sequence[tuple[str, str]],
    max_rows: int,
) -> ExportParams:
    """Parse URL query items for ``spec``; raise BadRequest with the reason."""
    fields = {f.encode_name: f for f in msgspec.structs.fields(spec.params)}
    seen: dict[str, str] = {}
    for key, raw in items:
        if key in seen:
            raise BadRequest(f"{spec.name}: parameter '{_shown(key)}' is given more than once")
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise BadRequest(
                f"{spec.name}: unknown parameter '{_shown(key)}' (parameters: {known})"
            )
        seen[key] = raw
    values: dict[str, Any] = {}
    offset, limit = 0, None
    for key, raw in seen.items():
        info = fields[key]
        if info.name == "offset":
            offset = _integer(spec.name, key, raw, 0, MAX_OFFSET)
        elif info.name == "limit":
            limit = _integer(spec.name, key, raw, 1, max_rows)
        else:
            values[info.name] = _value(spec.name, key, info.type, raw)
    if spec.window is not None:
        start_name, end_name = spec.window
        start, end = window(values.get(start_name), values.get(end_name))
        if start >= end:
            raise BadRequest(
                f"{spec.name}: '{spec.wire_name(start_name)}' must be before"
                f" '{spec.wire_name(end_name)}'"
            )
        values[start_name], values[end_name] = start, end
    missing = [
        f.encode_name
        for f in msgspec.structs.fields(spec.params)
        if f.required and f.name not in values and f.name not in _PAGING
    ]
    if missing:
        raise BadRequest(f"{spec.name}: parameter(s) {', '.join(missing)} required")
    return ExportParams(spec, values, offset, limit)


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"


def _integer(query: str, key: str, raw: str, low: int, high: int) -> int:
    # ASCII digits only: int() would also take "٣", " 3 " and "1_000".
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(f"{query}: parameter '{key}' must be an integer, got {_shown(raw)!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{query}: parameter '{key}' must be between {low} and {high}")
    return value


def _value(query: str, key: str, annotation: Any, raw: str) -> Any:
    base, _, meta = unwrap(annotation)
    if raw == "":
        raise BadRequest(f"{query}: parameter '{key}' is empty")
    try:
        if base is dt.datetime:
            return parse_datetime(raw)
        if base is dt.date:
            return parse_date(raw)
    except GraphQLError as exc:
        raise BadRequest(f"{query}: parameter '{key}': {exc.message}") from None
    if base is int:
        low = getattr(meta, "ge", None)
        high = getattr(meta, "le", None)
        return _integer(
            query,
            key,
            raw,
            -(2**63) if low is None else low,
            2**63 - 1 if high is None else high,
        )
    if base is bool:
        if raw in ("true", "false"):
            return raw == "true"
        raise BadRequest(f"{query}: parameter '{key}' must be true or false")
    if base is str:
        if len(raw) > MAX_TEXT_ARGUMENT:
            raise BadRequest(
                f"{query}: parameter '{key}' is {len(raw)} characters long,"
                f" more than {MAX_TEXT_ARGUMENT}"
            )
        return raw
    raise BadRequest(f"{query}: parameter '{key}' has an unsupported type {describe_type(base)}")
