"""Query and Subscription, built from the registry: one resolver per field, written once.

For every ``QuerySpec`` of ``pulse_bi.contract.registry`` the schema gets a Query field
and its live Subscription twin:

- by default both are generated: the arguments are the spec's parameters, the result
  type is generated from the spec's row struct, and the resolver fills clock defaults
  (``window``) and fetches. Rows are returned as they are decoded: their fields are the
  type's fields. A paged list's ``offset`` and ``limit`` default to null: the whole list,
  the gateway following ``next_offset`` itself; with a ``limit`` it asks for one page.
- a domain module may write the Query resolver by hand (``@resolver(SPEC)``) when the
  GraphQL shape differs from the rows (nested objects, arguments of nested fields); the
  Subscription twin is still generated from it.

The Subscription resolvers yield the Query resolver's result each time the topics the
spec reads change (``live``); in this gateway the live hub runs the Query twin for every
group of subscribers (gateway/live.py), so both share the same code path by construction.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any

import msgspec
import strawberry

from gateway.limits import MAX_LIMIT, check_limit, check_offset
from gateway.schema.base import Info, fetch, live, window
from pulse_bi.contract import QUERIES, QuerySpec
from pulse_bi.contract.spec import Row, unwrap

Resolver = Callable[..., Any]

_CUSTOM: dict[str, tuple[Resolver, Any]] = {}
#: Root fields that are not named queries (``alerts``): python name -> (Query, Subscription).
_EXTRA: dict[str, tuple[Any, Any]] = {}
_OBJECT_TYPES: dict[type[Row], type] = {}


def extra_field(name: str, query: Any, subscription: Any) -> None:
    """Register a root field that is not a named query (after the registry's fields)."""
    _EXTRA[name] = (query, subscription)


def resolver(spec: QuerySpec) -> Callable[[Resolver], Resolver]:  # type: ignore[type-arg]
    """Use this hand-written async function ``(info, **arguments) -> Type`` as the Query
    resolver of ``spec`` (its Subscription twin is generated from it)."""

    def register(function: Resolver) -> Resolver:
        if spec.name in _CUSTOM:
            raise TypeError(f"{spec.field} has two resolvers")
        hints = typing.get_type_hints(function, include_extras=True)
        _CUSTOM[spec.name] = (function, hints["return"])
        return function

    return register


def object_type(row: type[Row]) -> type:
    """The GraphQL object type of a row struct: same fields, same order, its docstring."""
    known = _OBJECT_TYPES.get(row)
    if known is not None:
        return known
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for info in msgspec.structs.fields(row):
        annotations[info.name] = output_type(info.type)
        _, _, meta = unwrap(info.type)
        # `from_` in Python is `from` on the wire; the API may name a field otherwise.
        name = row.graphql_fields.get(info.name, info.encode_name)
        renamed = name if name != info.name else None
        description = getattr(meta, "description", None)
        if renamed or description:
            namespace[info.name] = strawberry.field(name=renamed, description=description)
    type_name = row.graphql_name or row.__name__.removesuffix("Row")
    cls = type(type_name, (), {"__annotations__": annotations, **namespace})
    cls.__module__ = __name__
    made: type = strawberry.type(cls, description=inspect.cleandoc(row.__doc__ or ""))
    _OBJECT_TYPES[row] = made
    return made


def output_type(annotation: Any) -> Any:
    """A row field's annotation with row structs replaced by their object types."""
    base, optional, _ = unwrap(annotation)
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        base = list[output_type(item)]  # type: ignore[misc]
    elif isinstance(base, type) and issubclass(base, Row):
        base = object_type(base)
    return base | None if optional else base


#: What a paged list's ``offset`` and ``limit`` mean in GraphQL (null: the whole list).
_PAGING = {
    "offset": "Rows of the list to skip (default none).",
    "limit": f"At most this many rows, 1 to {MAX_LIMIT}, in the list's order "
    "(default: all of them).",
}


def _arguments(spec: QuerySpec) -> list[msgspec.structs.FieldInfo]:  # type: ignore[type-arg]
    """The parameters a GraphQL client gives: all but a top-N list's ``offset``, a paged
    list's ``offset`` and ``limit`` last."""
    fields = msgspec.structs.fields(spec.params)
    if spec.shape == "top":
        return [f for f in fields if f.name != "offset"]
    if spec.shape == "page":
        return [f for f in fields if f.name not in _PAGING] + [
            f for f in fields if f.name in _PAGING
        ]
    return list(fields)


def _generated(spec: QuerySpec) -> tuple[Resolver, Any]:  # type: ignore[type-arg]
    """The resolver and return type of a field that shows the spec's rows as they are."""
    arguments = _arguments(spec)
    paged = spec.shape == "page"
    defaults = {
        f.name: None
        if f.required or f.name in spec.clock or (paged and f.name in ("offset", "limit"))
        else f.default
        for f in arguments
    }
    start_end = spec.window

    async def resolve(info: Info, **given: Any) -> Any:
        values = {name: value for name, value in given.items() if value is not None}
        if start_end is not None:
            start, end = window(values.get(start_end[0]), values.get(start_end[1]))
            values[start_end[0]], values[start_end[1]] = start, end
        if "offset" in values:
            values["offset"] = check_offset(values["offset"])
        # A paged list without a limit is read whole, from `offset` on.
        one_page = paged and "limit" in values
        if "limit" in defaults and (one_page or not paged):
            values["limit"] = check_limit(given.get("limit"), int(defaults["limit"] or 0))
        return await fetch(info.context, spec, spec.params(**values), follow=not one_page)

    parameters = [inspect.Parameter("info", inspect.Parameter.KEYWORD_ONLY, annotation=Info)]
    for f in arguments:
        base, _, meta = unwrap(f.type)
        description = _PAGING[f.name] if paged and f.name in _PAGING else None
        argument = strawberry.argument(
            name=spec.graphql_arg(f.name),
            description=description or getattr(meta, "description", None),
        )
        parameters.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults[f.name],
                annotation=Annotated[base | None, argument],
            )
        )
    returns = output_type(spec.result)
    resolve.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    return resolve, returns


def _twin(spec: QuerySpec, query: Resolver, returns: Any) -> Resolver:  # type: ignore[type-arg]
    """The Subscription resolver: the Query resolver's result, again on every change."""

    async def subscribe(info: Info, **arguments: Any) -> AsyncGenerator[Any, None]:
        async for _ in live(info.context, spec):
            yield await query(info, **arguments)

    signature = inspect.signature(query)
    subscribe.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=AsyncGenerator[returns, None]
    )
    subscribe.__module__ = query.__module__
    return subscribe


def build() -> tuple[type, type]:
    """Query and Subscription with one field each per spec, in the registry's order."""
    import gateway.schema.alerts
    import gateway.schema.receivables  # noqa: F401 - hand-written resolvers register on import

    queries: dict[str, Any] = {}
    subscriptions: dict[str, Any] = {}
    for spec in QUERIES:
        query, returns = _CUSTOM.get(spec.name) or _generated(spec)
        name = _python_name(spec.field)
        queries[name] = strawberry.field(
            resolver=query, name=spec.field, description=spec.description
        )
        subscriptions[name] = strawberry.subscription(
            resolver=_twin(spec, query, returns),
            name=spec.field,
            description=f"Live `{spec.field}`.",
        )
    for name, (query_field, subscription_field) in _EXTRA.items():
        queries[name] = query_field
        subscriptions[name] = subscription_field
    return _root("Query", queries), _root("Subscription", subscriptions)


def _root(name: str, fields: dict[str, Any]) -> type:
    cls = type(name, (), fields)
    cls.__module__ = __name__
    made: type = strawberry.type(cls)
    return made


def _python_name(field: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in field)


__all__ = ["build", "extra_field", "object_type", "resolver"]
