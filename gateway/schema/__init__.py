"""The GraphQL schema: one module per domain, merged here into Query and Subscription."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from gateway.scalars import SCALAR_MAP
from gateway.schema.base import Context
from gateway.schema.inventory import InventoryQuery, InventorySubscription
from gateway.schema.pipeline import PipelineQuery, PipelineSubscription
from gateway.schema.receivables import ReceivablesQuery, ReceivablesSubscription
from gateway.schema.sales import SalesQuery, SalesSubscription

Query = merge_types("Query", (SalesQuery, InventoryQuery, ReceivablesQuery, PipelineQuery))
Subscription = merge_types(
    "Subscription",
    (SalesSubscription, InventorySubscription, ReceivablesSubscription, PipelineSubscription),
)

schema = strawberry.Schema(
    query=Query, subscription=Subscription, config=StrawberryConfig(scalar_map=SCALAR_MAP)
)


def export_schema() -> str:
    """The schema in SDL, as checked in at `schema.graphql`."""
    return schema.as_str() + "\n"


__all__ = ["Context", "export_schema", "schema"]
