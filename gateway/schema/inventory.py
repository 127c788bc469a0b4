"""Inventory: stock on hand, low stock and recent movements."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from gateway.limits import check_limit
from gateway.scalars import BigInt
from gateway.schema.base import (
    Context,
    Info,
    fetch,
    live,
    maybe_timestamp,
    timestamp,
)


@strawberry.type(description="Stock of one SKU in one warehouse.")
class StockLevel:
    sku: str
    warehouse: str
    on_hand: BigInt
    reorder_point: int
    low_stock: bool
    name: str | None
    category: str | None
    last_movement_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StockLevel:
        """Build from a `stock_levels` / `low_stock` row."""
        return cls(
            sku=row["sku"],
            warehouse=row["warehouse"],
            on_hand=row["on_hand"],
            reorder_point=row["reorder_point"],
            low_stock=row["low_stock"],
            name=row.get("name"),
            category=row.get("category"),
            last_movement_at=maybe_timestamp(row.get("last_movement_at")),
        )


@strawberry.type(description="One stock movement (a stock.moved event).")
class StockMovement:
    sequence: BigInt
    time: dt.datetime
    sku: str
    warehouse: str
    quantity_delta: int
    reason: str


async def stock_levels(
    context: Context, warehouse: str | None, sku: str | None
) -> list[StockLevel]:
    """Stock per SKU and warehouse."""
    rows = await fetch(context, "stock_levels", {"warehouse": warehouse, "sku": sku})
    return [StockLevel.from_row(row) for row in rows]


async def low_stock(context: Context, warehouse: str | None) -> list[StockLevel]:
    """Stock at or below its reorder point, most urgent first."""
    rows = await fetch(context, "low_stock", {"warehouse": warehouse})
    return [StockLevel.from_row(row) for row in rows]


async def stock_movements(
    context: Context, warehouse: str | None, sku: str | None, limit: int | None
) -> list[StockMovement]:
    """Latest movements, newest first."""
    params = {"warehouse": warehouse, "sku": sku, "limit": check_limit(limit, 50)}
    rows = await fetch(context, "stock_movements", params)
    return [
        StockMovement(
            sequence=row["sequence"],
            time=timestamp(row["time"]),
            sku=row["sku"],
            warehouse=row["warehouse"],
            quantity_delta=row["quantity_delta"],
            reason=row["reason"],
        )
        for row in rows
    ]


@strawberry.type
class InventoryQuery:
    """Inventory fields of Query."""

    @strawberry.field(description="Stock on hand per SKU and warehouse, by sku then warehouse.")
    async def stock_levels(
        self, info: Info, warehouse: str | None = None, sku: str | None = None
    ) -> list[StockLevel]:
        return await stock_levels(info.context, warehouse, sku)

    @strawberry.field(description="Items at or below their reorder point, most urgent first.")
    async def low_stock(self, info: Info, warehouse: str | None = None) -> list[StockLevel]:
        return await low_stock(info.context, warehouse)

    @strawberry.field(description="Latest stock movements, newest first.")
    async def stock_movements(
        self,
        info: Info,
        warehouse: str | None = None,
        sku: str | None = None,
        limit: int | None = 50,
    ) -> list[StockMovement]:
        return await stock_movements(info.context, warehouse, sku, limit)


@strawberry.type
class InventorySubscription:
    """Live inventory fields of Subscription."""

    @strawberry.subscription(description="Live `stockLevels`.")
    async def stock_levels(
        self, info: Info, warehouse: str | None = None, sku: str | None = None
    ) -> AsyncGenerator[list[StockLevel], None]:
        async for _ in live(info.context, "stock_levels"):
            yield await stock_levels(info.context, warehouse, sku)

    @strawberry.subscription(description="Live `lowStock`.")
    async def low_stock(
        self, info: Info, warehouse: str | None = None
    ) -> AsyncGenerator[list[StockLevel], None]:
        async for _ in live(info.context, "low_stock"):
            yield await low_stock(info.context, warehouse)

    @strawberry.subscription(description="Live `stockMovements`.")
    async def stock_movements(
        self,
        info: Info,
        warehouse: str | None = None,
        sku: str | None = None,
        limit: int | None = 50,
    ) -> AsyncGenerator[list[StockMovement], None]:
        async for _ in live(info.context, "stock_movements"):
            yield await stock_movements(info.context, warehouse, sku, limit)
