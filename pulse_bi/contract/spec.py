"""The shape of a declaration: what one named query and one aggregate say about themselves.

Everything else is derived from these (docs/ARCHITECTURE.md, "The registry"): the
materializer's endpoints and parameter checks, the store's raw-table list, the gateway's
cache keys, live-query relevance, clock refreshes, REST formatting, the GraphQL fields
and their Subscription twins, and the named-query table of docs/API.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, NewType, TypeVar

import msgspec

from pulse_bi.contract.wire import TOPICS, Changes

if TYPE_CHECKING:  # plain values to the type checker
    Money = Decimal
    BigInt = int
else:  # distinct types at run time: the GraphQL schema maps them to its scalars
    #: Money: an exact Decimal with two places; a decimal string on the wire.
    Money = NewType("Money", Decimal)
    #: Sequences, counters and sums of quantities that may pass 2^31.
    BigInt = NewType("BigInt", int)

#: Largest page of a paged list, and the default (docs/API.md, "Conventions").
MAX_PAGE = 5000
DEFAULT_PAGE = 1000
#: Bounds of a page or top-N size.
PageSize = typing.Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
#: Bounds of an offset into a paged list.
Offset = typing.Annotated[int, msgspec.Meta(ge=0, le=2**62)]

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R")


class Params(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every query's parameters: unknown names are refused, not ignored."""


class Row(msgspec.Struct, kw_only=True):
    """Base of every result row: built by field name, so a renamed column is an error.

    Its GraphQL object type is generated from it (same fields in the same order, the
    docstring as description, ``Meta(description=...)`` on a field as the field's);
    ``graphql_name`` and ``graphql_fields`` rename the type and fields where the API's
    names differ from the wire's.
    """

    graphql_name: ClassVar[str | None] = None
    graphql_fields: ClassVar[Mapping[str, str]] = {}


@dataclass(frozen=True, slots=True)
class QuerySpec(Generic[P, R]):
    """One named query: its names, parameters, result, and what its result depends on."""

    #: NATS name (snake_case): subject ``pulse.bi.query.<name>``.
    name: str
    #: Parameters (a ``Params`` struct; wire names are the struct's encode names).
    params: type[P]
    #: The reply's ``data``: ``list[SomeRow]`` or one row struct.
    result: type[R]
    #: The GraphQL field's description.
    description: str
    #: One line for docs/API.md: what the data is and how it is ordered.
    doc: str
    #: Topics (``wire.TOPICS``) whose change may change the result.
    reads: tuple[str, ...]
    #: GraphQL root field of Query and of its live Subscription twin (default: the name
    #: in camelCase, ``sales_by_hour`` -> ``salesByHour``).
    field: str = ""
    #: ``Changes`` flags (``products``, ``receivables``) that make a notice count whatever
    #: the filters say: the result depends on every item they stand for.
    always: tuple[str, ...] = ()
    #: Parameter -> ``Changes`` key list: a notice whose list lacks the argument's value
    #: cannot change the result (an empty list says nothing and counts as a change).
    filters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: (start, end) parameters bounding ``Changes.sales_hours``: a notice whose hours all
    #: fall outside [start, end) cannot change the result.
    window: tuple[str, str] | None = None
    #: Parameters that default to "now" (today, the last 24 h): the result changes when
    #: the hour turns, even without a notice.
    clock: tuple[str, ...] = ()
    #: ``page``: the materializer pages the list; ``top``: ``limit`` is the N of a top-N
    #: list and no ``next_offset`` is set; ``one``: a single struct.
    shape: Literal["page", "top", "one"] = "page"

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", camel_case(self.name))
        names = {f.name for f in msgspec.structs.fields(self.params)}
        known = {*self.filters, *(self.window or ()), *self.clock}
        if not known <= names:
            raise TypeError(f"{self.name}: {sorted(known - names)} are not parameters")
        if self.shape != "one" and not {"offset", "limit"} <= names:
            raise TypeError(f"{self.name}: a {self.shape} list needs offset and limit parameters")
        if not set(self.reads) <= set(TOPICS):
            raise TypeError(f"{self.name}: reads {sorted(set(self.reads) - set(TOPICS))}")
        flags = {f.name for f in msgspec.structs.fields(Changes) if f.type is bool}
        lists = {f.name for f in msgspec.structs.fields(Changes)} - flags
        if not set(self.always) <= flags or not set(self.filters.values()) <= lists:
            raise TypeError(f"{self.name}: `always` names Changes flags, `filters` its lists")

    def wire_name(self, param: str) -> str:
        """The wire (and GraphQL, camelCased) name of a parameter."""
        for info in msgspec.structs.fields(self.params):
            if info.name == param:
                return info.encode_name
        raise KeyError(param)

    def graphql_arg(self, param: str) -> str:
        """The GraphQL argument name of a parameter (``as_of`` -> ``asOf``)."""
        return camel_case(self.wire_name(param))

    @property
    def row(self) -> type[Row]:
        """The row struct of the result (of its list, for a list result)."""
        args = typing.get_args(self.result)
        row = args[0] if args else self.result
        assert isinstance(row, type) and issubclass(row, Row)
        return row


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """One aggregate: the events it consumes, where their ids live, what it announces."""

    name: str
    #: CloudEvents ``type`` values it consumes (docs/EVENTS.md); each belongs to one.
    event_types: tuple[str, ...]
    #: Raw tables holding the ``event_id`` of every event it applied: the store looks a
    #: re-delivered event up in them, so one left off would be applied twice.
    raw_tables: tuple[str, ...]
    #: Topics its batches announce (``wire.TOPICS``).
    topics: tuple[str, ...]


def camel_case(name: str) -> str:
    """A snake_case name as GraphQL spells it (``sales_by_hour`` -> ``salesByHour``)."""
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


def unwrap(annotation: Any) -> tuple[Any, bool, Any]:
    """(base type, optional?, msgspec.Meta or None) of a field's annotation."""
    meta = None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        meta = next((m for m in extra if isinstance(m, msgspec.Meta)), None)
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        annotation = members[0] if len(members) == 1 else annotation
        # ``Annotated[str, Meta(...)] | None``: msgspec puts string bounds inside.
        if meta is None and typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            meta = next((m for m in extra if isinstance(m, msgspec.Meta)), None)
    return annotation, optional, meta


def describe_type(annotation: Any) -> str:
    """A short human name of a parameter's type, for docs and messages."""
    base, _, _ = unwrap(annotation)
    names = {dt.datetime: "time", dt.date: "date", int: "integer", str: "string", bool: "boolean"}
    return names.get(base, getattr(base, "__name__", str(base)))
