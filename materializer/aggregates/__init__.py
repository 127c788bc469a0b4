"""Aggregates: one module per ``AggregateSpec`` of ``pulse_bi.contract.registry``, each
with its tables, how a batch is applied (``probe`` then ``apply``), how its tables are
recomputed from the raw rows of a history (``rebuild``, ``aggregates/history.py``) and
the SQL functions of its named queries (``@implements``).
"""

from __future__ import annotations

from materializer.aggregates import catalog, pipeline, receivables, sales, sites, stock
from pulse_bi.contract import registry

#: The modules in the registry's order (``registry.AGGREGATES``: the order a batch's
#: transaction applies them).
AGGREGATES = (catalog, sales, stock, receivables, sites, pipeline)

#: Aggregate tables kept as base + delta (``materializer.aggregates.deltas``).
FOLDED = (*sales.FOLDED, *stock.FOLDED, *pipeline.FOLDED)


def check_registry() -> list[str]:
    """Aggregates declared without a module or out of order, modules missing ``probe``,
    ``apply`` or ``rebuild``, event types nobody consumes."""
    from materializer.events import EVENT_TYPES

    problems = []
    if tuple(m.SPEC for m in AGGREGATES) != registry.AGGREGATES:
        problems.append("materializer.aggregates.AGGREGATES differs from registry.AGGREGATES")
    problems += [
        f"aggregate module {m.__name__} has no {name}()"
        for m in AGGREGATES
        for name in ("probe", "apply", "rebuild")
        if not callable(getattr(m, name, None))
    ]
    consumed = [t for spec in registry.AGGREGATES for t in spec.event_types]
    problems += [
        f"event type {t} is consumed by no aggregate" for t in EVENT_TYPES if t not in consumed
    ]
    problems += [f"event type {t} is not decoded" for t in consumed if t not in EVENT_TYPES]
    problems += [
        f"event type {t} is consumed twice" for t in set(consumed) if consumed.count(t) > 1
    ]
    return problems
