"""Receivables: AR aging has a GraphQL shape of its own (buckets, customers on demand)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from gateway.limits import check_limit
from gateway.scalars import BigInt, Money
from gateway.schema.base import Context, Info, fetch
from gateway.schema.fields import object_type, resolver
from pulse_bi.contract.registry import AR_AGING, AgingParams, AgingRow, CustomerAgingRow, Site
from pulse_bi.contract.spec import unwrap

#: Customers fetched with the aging by default (the named query's default too).
DEFAULT_CUSTOMERS = AgingParams().customer_limit
#: The ``site`` argument, described as the registry declares it.
_SITE_ARGUMENT = strawberry.argument(description=unwrap(Site)[2].description)


@strawberry.type(description="Open balances by days overdue.")
class AgingBuckets:
    current: Money
    days_1_to_30: Money
    days_31_to_60: Money
    days_61_to_90: Money
    over_90: Money
    total: Money

    @classmethod
    def of(cls, row: AgingRow) -> AgingBuckets:
        """The buckets of the overall aging row."""
        return cls(
            current=row.current,
            days_1_to_30=row.days_1_30,
            days_31_to_60=row.days_31_60,
            days_61_to_90=row.days_61_90,
            over_90=row.over_90,
            total=row.total,
        )


if TYPE_CHECKING:  # the rows are what the resolvers return
    CustomerAging = CustomerAgingRow
else:  # the generated GraphQL type of the rows
    CustomerAging = object_type(CustomerAgingRow)


@strawberry.type(description="Accounts receivable aging as of a date.")
class ArAging:
    as_of: dt.date
    buckets: AgingBuckets
    total_outstanding: Money
    open_invoices: BigInt
    #: None: the query did not select ``byCustomer``, so none were fetched.
    _customers: strawberry.Private[list[CustomerAgingRow] | None]
    _context: strawberry.Private[Context]
    _site: strawberry.Private[str | None] = None

    @strawberry.field(description="Customers by open balance, largest first.")
    async def by_customer(self, limit: int | None = DEFAULT_CUSTOMERS) -> list[CustomerAging]:
        limit = check_limit(limit, DEFAULT_CUSTOMERS)
        rows = self._customers
        if rows is None or (limit > len(rows) and len(rows) >= DEFAULT_CUSTOMERS):
            # None came with the aging, or fewer than wanted: ask for exactly as many.
            params = AgingParams(as_of=self.as_of, customer_limit=limit, site=self._site)
            rows = (await fetch(self._context, AR_AGING, params)).by_customer
        return rows[:limit]


@resolver(AR_AGING)
async def ar_aging(
    info: Info,
    as_of: dt.date | None = None,
    site: Annotated[str | None, _SITE_ARGUMENT] = None,
) -> ArAging:
    """Aging buckets overall and per customer."""
    # Without ``byCustomer`` the materializer sums the open items without grouping them
    # by customer, several times cheaper (docs/API.md, ``customer_limit`` 0).
    listed = _selects((s for field in info.selected_fields for s in field.selections), "byCustomer")
    params = AgingParams(as_of=as_of, site=site, customer_limit=DEFAULT_CUSTOMERS if listed else 0)
    data = await fetch(info.context, AR_AGING, params)
    return ArAging(
        as_of=data.as_of,
        buckets=AgingBuckets.of(data),
        total_outstanding=data.total,
        open_invoices=data.open_invoices,
        _customers=data.by_customer if listed else None,
        _context=info.context,
        _site=site,
    )


def _selects(selections: Iterable[Selection], name: str) -> bool:
    """Whether the field ``name`` is among these selections or their fragments'."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name == name:
                return True
        elif _selects(selection.selections, name):
            return True
    return False
