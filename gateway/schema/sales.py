"""Sales: revenue and orders per hour, summaries and top products."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from gateway.limits import check_limit
from gateway.scalars import BigInt, Money
from gateway.schema.base import (
    Context,
    FromArg,
    Info,
    ToArg,
    fetch,
    iso,
    live,
    money,
    timestamp,
    window,
)


@strawberry.type(description="Sales of one UTC hour (only hours with orders are listed).")
class HourlySales:
    hour: dt.datetime
    orders: BigInt
    cancelled_orders: BigInt
    gross_revenue: Money
    cancelled_revenue: Money
    net_revenue: Money
    units: BigInt
    average_order_value: Money

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> HourlySales:
        """Build from a `sales_by_hour` row."""
        return cls(
            hour=timestamp(row["hour"]),
            orders=row["orders"],
            cancelled_orders=row["cancelled_orders"],
            gross_revenue=money(row["gross_revenue"]),
            cancelled_revenue=money(row["cancelled_revenue"]),
            net_revenue=money(row["net_revenue"]),
            units=row["units"],
            average_order_value=money(row["average_order_value"]),
        )


@strawberry.type(description="Sales totals over a time range.")
class SalesSummary:
    from_: dt.datetime = strawberry.field(name="from")
    to: dt.datetime
    orders: BigInt
    cancelled_orders: BigInt
    gross_revenue: Money
    cancelled_revenue: Money
    net_revenue: Money
    units: BigInt
    average_order_value: Money


@strawberry.type(description="One product's sales, net of cancelled orders.")
class ProductSales:
    sku: str
    name: str | None
    category: str | None
    units: BigInt
    revenue: Money


async def sales_by_hour(
    context: Context, start: dt.datetime | None, end: dt.datetime | None, channel: str | None
) -> list[HourlySales]:
    """Hourly sales rows in [start, end)."""
    start, end = window(start, end)
    params = {"from": iso(start), "to": iso(end), "channel": channel}
    rows = await fetch(context, "sales_by_hour", params)
    return [HourlySales.from_row(row) for row in rows]


async def sales_summary(
    context: Context, start: dt.datetime | None, end: dt.datetime | None, channel: str | None
) -> SalesSummary:
    """Totals over [start, end)."""
    start, end = window(start, end)
    params = {"from": iso(start), "to": iso(end), "channel": channel}
    row = await fetch(context, "sales_summary", params)
    return SalesSummary(
        from_=start,
        to=end,
        orders=row["orders"],
        cancelled_orders=row["cancelled_orders"],
        gross_revenue=money(row["gross_revenue"]),
        cancelled_revenue=money(row["cancelled_revenue"]),
        net_revenue=money(row["net_revenue"]),
        units=row["units"],
        average_order_value=money(row["average_order_value"]),
    )


async def top_products(
    context: Context, start: dt.datetime | None, end: dt.datetime | None, limit: int | None
) -> list[ProductSales]:
    """Best-selling products by net revenue."""
    start, end = window(start, end)
    params = {"from": iso(start), "to": iso(end), "limit": check_limit(limit, 10)}
    rows = await fetch(context, "top_products", params)
    return [
        ProductSales(
            sku=row["sku"],
            name=row.get("name"),
            category=row.get("category"),
            units=row["units"],
            revenue=money(row["revenue"]),
        )
        for row in rows
    ]


@strawberry.type
class SalesQuery:
    """Sales fields of Query."""

    @strawberry.field(description="Sales per UTC hour in [from, to); default the last 24 h.")
    async def sales_by_hour(
        self, info: Info, from_: FromArg = None, to: ToArg = None, channel: str | None = None
    ) -> list[HourlySales]:
        return await sales_by_hour(info.context, from_, to, channel)

    @strawberry.field(description="Sales totals in [from, to); default the last 24 h.")
    async def sales_summary(
        self, info: Info, from_: FromArg = None, to: ToArg = None, channel: str | None = None
    ) -> SalesSummary:
        return await sales_summary(info.context, from_, to, channel)

    @strawberry.field(description="Products by net revenue in [from, to), best first.")
    async def top_products(
        self, info: Info, from_: FromArg = None, to: ToArg = None, limit: int | None = 10
    ) -> list[ProductSales]:
        return await top_products(info.context, from_, to, limit)


@strawberry.type
class SalesSubscription:
    """Live sales fields of Subscription."""

    @strawberry.subscription(description="Live `salesByHour`.")
    async def sales_by_hour(
        self, info: Info, from_: FromArg = None, to: ToArg = None, channel: str | None = None
    ) -> AsyncGenerator[list[HourlySales], None]:
        async for _ in live(info.context, "sales_by_hour"):
            yield await sales_by_hour(info.context, from_, to, channel)

    @strawberry.subscription(description="Live `salesSummary`.")
    async def sales_summary(
        self, info: Info, from_: FromArg = None, to: ToArg = None, channel: str | None = None
    ) -> AsyncGenerator[SalesSummary, None]:
        async for _ in live(info.context, "sales_summary"):
            yield await sales_summary(info.context, from_, to, channel)

    @strawberry.subscription(description="Live `topProducts`.")
    async def top_products(
        self, info: Info, from_: FromArg = None, to: ToArg = None, limit: int | None = 10
    ) -> AsyncGenerator[list[ProductSales], None]:
        async for _ in live(info.context, "top_products"):
            yield await top_products(info.context, from_, to, limit)
