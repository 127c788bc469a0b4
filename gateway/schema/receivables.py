"""Receivables: AR aging buckets, per customer, and overdue invoices."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from gateway.limits import check_limit
from gateway.scalars import BigInt, Money
from gateway.schema.base import Context, Info, date, fetch, iso, live, money

#: Customers fetched with the aging by default (the named query's default too).
DEFAULT_CUSTOMERS = 100


@strawberry.type(description="Open balances by days overdue.")
class AgingBuckets:
    current: Money
    days_1_to_30: Money
    days_31_to_60: Money
    days_61_to_90: Money
    over_90: Money
    total: Money


@strawberry.type(description="One customer's open balances by days overdue.")
class CustomerAging:
    customer_id: str
    customer_name: str | None
    open_invoices: BigInt
    current: Money
    days_1_to_30: Money
    days_31_to_60: Money
    days_61_to_90: Money
    over_90: Money
    total: Money

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CustomerAging:
        """Build from a `by_customer` row of `ar_aging`."""
        return cls(
            customer_id=row["customer_id"],
            customer_name=row.get("customer_name"),
            open_invoices=row["open_invoices"],
            current=money(row["current"]),
            days_1_to_30=money(row["days_1_30"]),
            days_31_to_60=money(row["days_31_60"]),
            days_61_to_90=money(row["days_61_90"]),
            over_90=money(row["over_90"]),
            total=money(row["total"]),
        )


@strawberry.type(description="Accounts receivable aging as of a date.")
class ArAging:
    as_of: dt.date
    buckets: AgingBuckets
    total_outstanding: Money
    open_invoices: BigInt
    _customers: strawberry.Private[list[dict[str, Any]]]
    _context: strawberry.Private[Context]

    @strawberry.field(description="Customers by open balance, largest first.")
    async def by_customer(self, limit: int | None = DEFAULT_CUSTOMERS) -> list[CustomerAging]:
        limit = check_limit(limit, DEFAULT_CUSTOMERS)
        rows = self._customers
        if limit > len(rows) and len(rows) >= DEFAULT_CUSTOMERS:
            # More customers than came with the aging: ask for exactly as many as wanted.
            params = {"as_of": iso(self.as_of), "customer_limit": limit}
            rows = (await fetch(self._context, "ar_aging", params))["by_customer"]
        return [CustomerAging.from_row(row) for row in rows[:limit]]


@strawberry.type(description="An open invoice and how late it is.")
class OverdueInvoice:
    invoice_id: str
    customer_id: str
    customer_name: str | None
    order_id: str | None
    amount: Money
    paid: Money
    balance: Money
    issued_on: dt.date
    due_date: dt.date
    days_overdue: int
    bucket: str


async def ar_aging(context: Context, as_of: dt.date | None) -> ArAging:
    """Aging buckets overall and per customer."""
    params = {"as_of": iso(as_of), "customer_limit": DEFAULT_CUSTOMERS}
    data = await fetch(context, "ar_aging", params)
    total = money(data["total"])
    return ArAging(
        as_of=date(data["as_of"]),
        buckets=AgingBuckets(
            current=money(data["current"]),
            days_1_to_30=money(data["days_1_30"]),
            days_31_to_60=money(data["days_31_60"]),
            days_61_to_90=money(data["days_61_90"]),
            over_90=money(data["over_90"]),
            total=total,
        ),
        total_outstanding=total,
        open_invoices=data["open_invoices"],
        _customers=data.get("by_customer") or [],
        _context=context,
    )


async def overdue_invoices(
    context: Context, as_of: dt.date | None, min_days: int | None, customer_id: str | None
) -> list[OverdueInvoice]:
    """Open invoices at least `min_days` overdue, latest first."""
    params = {
        "as_of": iso(as_of),
        "min_days_overdue": 1 if min_days is None else min_days,
        "customer_id": customer_id,
    }
    rows = await fetch(context, "overdue_invoices", params)
    return [
        OverdueInvoice(
            invoice_id=row["invoice_id"],
            customer_id=row["customer_id"],
            customer_name=row.get("customer_name"),
            order_id=row.get("order_id"),
            amount=money(row["amount"]),
            paid=money(row["paid"]),
            balance=money(row["balance"]),
            issued_on=date(row["issued_on"]),
            due_date=date(row["due_date"]),
            days_overdue=row["days_overdue"],
            bucket=row["bucket"],
        )
        for row in rows
    ]


@strawberry.type
class ReceivablesQuery:
    """Receivables fields of Query."""

    @strawberry.field(description="AR aging as of a date (default today, UTC).")
    async def ar_aging(self, info: Info, as_of: dt.date | None = None) -> ArAging:
        return await ar_aging(info.context, as_of)

    @strawberry.field(description="Open invoices by days overdue, latest first.")
    async def overdue_invoices(
        self,
        info: Info,
        as_of: dt.date | None = None,
        min_days_overdue: int | None = 1,
        customer_id: str | None = None,
    ) -> list[OverdueInvoice]:
        return await overdue_invoices(info.context, as_of, min_days_overdue, customer_id)


@strawberry.type
class ReceivablesSubscription:
    """Live receivables fields of Subscription."""

    @strawberry.subscription(description="Live `arAging`.")
    async def ar_aging(
        self, info: Info, as_of: dt.date | None = None
    ) -> AsyncGenerator[ArAging, None]:
        async for _ in live(info.context, "ar_aging"):
            yield await ar_aging(info.context, as_of)

    @strawberry.subscription(description="Live `overdueInvoices`.")
    async def overdue_invoices(
        self,
        info: Info,
        as_of: dt.date | None = None,
        min_days_overdue: int | None = 1,
        customer_id: str | None = None,
    ) -> AsyncGenerator[list[OverdueInvoice], None]:
        async for _ in live(info.context, "overdue_invoices"):
            yield await overdue_invoices(info.context, as_of, min_days_overdue, customer_id)
