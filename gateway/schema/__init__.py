"""The GraphQL schema: Query and Subscription built from the registry (fields.py)."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from gateway.scalars import SCALAR_MAP
from gateway.schema.base import Context
from gateway.schema.fields import build

Query, Subscription = build()

schema = strawberry.Schema(
    query=Query, subscription=Subscription, config=StrawberryConfig(scalar_map=SCALAR_MAP)
)


def export_schema() -> str:
    """The schema in SDL, as checked in at `schema.graphql`."""
    return schema.as_str() + "\n"


__all__ = ["Context", "export_schema", "schema"]
