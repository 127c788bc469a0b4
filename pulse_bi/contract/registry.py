"""Every named query and every aggregate, declared once (docs/ARCHITECTURE.md).

A named query is a ``QuerySpec``: its parameters and rows as typed structs next to it.
The materializer implements each one with one SQL function (``@implements(SPEC)``),
the gateway derives its GraphQL field, live twin, caching and relevance from it, and
docs/API.md lists it (checked by a test). Order here is the order of the GraphQL fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Required, TypedDict

import msgspec

from pulse_bi.contract.spec import (
    DEFAULT_PAGE,
    MAX_PAGE,
    AggregateSpec,
    BigInt,
    Money,
    Offset,
    PageSize,
    Params,
    QuerySpec,
    Row,
)
from pulse_bi.contract.wire import MAX_SITE_LENGTH, SITE_PATTERN

#: Window bounds as the GraphQL arguments describe them (the wire requires both).
Start = Annotated[
    dt.datetime, msgspec.Meta(description="Start, inclusive (default: 24 h before `to`).")
]
End = Annotated[
    dt.datetime, msgspec.Meta(description="End, exclusive (default: the end of the current hour).")
]
#: An as-of date; the materializer takes today (UTC) when it is not given.
AsOf = dt.date | None
#: One site's share of an aggregate (docs/EVENTS.md, "Sites"); absent: every site summed.
Site = (
    Annotated[
        str,
        msgspec.Meta(
            max_length=MAX_SITE_LENGTH,
            pattern=SITE_PATTERN,
            description="Only events of this site ('' is the central site; default all sites).",
        ),
    ]
    | None
)


class AggregateParams(Params, kw_only=True):
    """Base of the parameters of every query over the aggregates: a parameter all of
    them take is declared here, once."""

    site: Site = None


class AggregatePage(AggregateParams, kw_only=True):
    """Parameters of a paged list over the aggregates: ``next_offset`` is set while more
    rows follow."""

    offset: Offset = 0
    limit: PageSize = DEFAULT_PAGE


class Dependence(TypedDict, total=False):
    """What the results of queries alike depend on (the ``QuerySpec`` fields of that name),
    declared once for all of them."""

    reads: Required[tuple[str, ...]]
    always: tuple[str, ...]
    filters: Mapping[str, str]
    window: tuple[str, str]
    clock: tuple[str, ...]


# Rows sharing a field group (SalesTotals, AgingBuckets) subclass it without `kw_only`:
# msgspec puts such a class's own fields before the keyword-only ones of its base, so
# the row lists its key (hour, channel, customer) first and the shared fields after it,
# the order GraphQL and docs/API.md show.


# Sales ------------------------------------------------------------------------------


class Window(AggregateParams, kw_only=True):
    """A time range of hour buckets."""

    from_: Start = msgspec.field(name="from")
    to: End


class SalesWindow(Window, kw_only=True):
    """A time range of hour buckets, optionally one sales channel."""

    channel: str | None = None


class PagedSalesWindow(SalesWindow, kw_only=True):
    """A paged list over a time range."""

    offset: Offset = 0
    limit: PageSize = DEFAULT_PAGE


class SalesTotals(Row, kw_only=True):
    """Sales totals: the fields every sales row ends with."""

    orders: BigInt
    cancelled_orders: BigInt
    gross_revenue: Money
    cancelled_revenue: Money
    net_revenue: Money
    units: BigInt
    average_order_value: Money


class HourlySalesRow(SalesTotals):
    """Sales of one UTC hour (only hours with orders are listed)."""

    hour: dt.datetime


class SalesSummaryRow(SalesTotals):
    """Sales totals over a time range."""

    from_: dt.datetime = msgspec.field(name="from")
    to: dt.datetime


class TopProductsParams(Window, kw_only=True):
    """The N best products of a time range."""

    offset: Offset = 0
    limit: PageSize = 10


class ProductSalesRow(Row, kw_only=True):
    """One product's sales, net of cancelled orders."""

    sku: str
    name: str | None
    category: str | None
    units: BigInt
    revenue: Money


class ChannelSalesRow(SalesTotals):
    """Sales of one channel over a time range."""

    channel: str


#: Sales over a window of hours, narrowed by channel, relative to the clock by default.
_SALES_WINDOW: Dependence = {
    "reads": ("sales",),
    "filters": {"channel": "channels"},
    "window": ("from_", "to"),
    "clock": ("from_", "to"),
}
SALES_BY_HOUR = QuerySpec(
    name="sales_by_hour",
    params=PagedSalesWindow,
    result=list[HourlySalesRow],
    description="Sales per UTC hour in [from, to); default the last 24 h.",
    doc="hourly rows ordered by hour; only hours that have data",
    **_SALES_WINDOW,
)
SALES_SUMMARY = QuerySpec(
    name="sales_summary",
    params=SalesWindow,
    result=SalesSummaryRow,
    description="Sales totals in [from, to); default the last 24 h.",
    doc="totals over the range",
    shape="one",
    **_SALES_WINDOW,
)
TOP_PRODUCTS = QuerySpec(
    name="top_products",
    params=TopProductsParams,
    result=list[ProductSalesRow],
    description="Products by net revenue in [from, to), best first.",
    doc="by net revenue desc then sku; units and revenue net of cancelled orders",
    reads=("sales", "products"),
    always=("products",),
    window=("from_", "to"),
    clock=("from_", "to"),
    shape="top",
)


# Inventory --------------------------------------------------------------------------


class StockFilter(AggregatePage, kw_only=True):
    """Optional warehouse and sku filters of a paged stock list."""

    warehouse: str | None = None
    sku: str | None = None


class WarehouseFilter(AggregatePage, kw_only=True):
    """An optional warehouse filter of a paged list."""

    warehouse: str | None = None


class StockLevelRow(Row, kw_only=True):
    """Stock of one SKU in one warehouse."""

    sku: str
    warehouse: str
    on_hand: BigInt
    reorder_point: int
    low_stock: bool
    name: str | None
    category: str | None
    last_movement_at: dt.datetime | None


class MovementsParams(AggregateParams, kw_only=True):
    """The latest N movements, optionally of one warehouse and sku."""

    warehouse: str | None = None
    sku: str | None = None
    offset: Offset = 0
    limit: PageSize = 50


class StockMovementRow(Row, kw_only=True):
    """One stock movement (a stock.moved event)."""

    sequence: BigInt
    time: dt.datetime
    sku: str
    warehouse: str
    quantity_delta: int
    reason: str


STOCK_LEVELS = QuerySpec(
    name="stock_levels",
    params=StockFilter,
    result=list[StockLevelRow],
    description="Stock on hand per SKU and warehouse, by sku then warehouse.",
    doc="by sku, warehouse",
    reads=("stock", "products"),
    always=("products",),
    filters={"warehouse": "warehouses", "sku": "skus"},
)
LOW_STOCK = QuerySpec(
    name="low_stock",
    params=WarehouseFilter,
    result=list[StockLevelRow],
    description="Items at or below their reorder point, most urgent first.",
    doc="the `stock_levels` rows at or below their reorder point, by"
    " `on_hand - reorder_point` then sku, warehouse",
    reads=("stock", "products"),
    always=("products",),
    filters={"warehouse": "warehouses"},
)
STOCK_MOVEMENTS = QuerySpec(
    name="stock_movements",
    params=MovementsParams,
    result=list[StockMovementRow],
    description="Latest stock movements, newest first.",
    doc="latest movements, newest first",
    reads=("stock",),
    filters={"warehouse": "warehouses", "sku": "skus"},
    shape="top",
)


# Receivables ------------------------------------------------------------------------


#: How many customers the aging lists; 0 asks for the overall buckets alone, a read that
#: skips grouping the open items by customer (docs/API.md).
CustomerLimit = Annotated[int, msgspec.Meta(ge=0, le=MAX_PAGE)]


class AgingParams(AggregateParams, kw_only=True):
    """An as-of date and how many customers to list."""

    as_of: AsOf = None
    customer_limit: CustomerLimit = 100


#: The API's names of the aging buckets.
_BUCKET_NAMES = {"days_1_30": "days1To30", "days_31_60": "days31To60", "days_61_90": "days61To90"}


class AgingBuckets(Row, kw_only=True):
    """Open balances by days overdue, and their total."""

    current: Money
    days_1_30: Money
    days_31_60: Money
    days_61_90: Money
    over_90: Money
    total: Money


class CustomerAgingRow(AgingBuckets):
    """One customer's open balances by days overdue."""

    graphql_name = "CustomerAging"
    graphql_fields = _BUCKET_NAMES

    customer_id: str
    customer_name: str | None
    open_invoices: BigInt


class _DatedBuckets(AgingBuckets):
    as_of: dt.date  # stands before the buckets; the fields of AgingRow after them


class AgingRow(_DatedBuckets, kw_only=True):
    """Accounts receivable aging as of a date."""

    open_invoices: BigInt
    by_customer: list[CustomerAgingRow]


class OverdueParams(AggregatePage, kw_only=True):
    """Open invoices at least some days overdue, optionally of one customer."""

    as_of: AsOf = None
    min_days_overdue: Annotated[int, msgspec.Meta(ge=-100_000, le=100_000)] = 1
    customer_id: str | None = None


class OverdueInvoiceRow(Row, kw_only=True):
    """An open invoice and how late it is."""

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


AR_AGING = QuerySpec(
    name="ar_aging",
    params=AgingParams,
    result=AgingRow,
    description="AR aging as of a date (default today, UTC).",
    doc="open balances by bucket overall and per customer; `by_customer` by total desc"
    " then customer_id, empty with `customer_limit` 0 (the overall buckets alone, a"
    " cheaper read)",
    reads=("receivables", "customers"),
    clock=("as_of",),
    shape="one",
)
OVERDUE_INVOICES = QuerySpec(
    name="overdue_invoices",
    params=OverdueParams,
    result=list[OverdueInvoiceRow],
    description="Open invoices by days overdue, latest first.",
    doc="open invoices only, by days_overdue desc then invoice_id; bucket one of"
    " `current`, `1-30`, `31-60`, `61-90`, `over-90`",
    reads=("receivables", "customers"),
    always=("receivables",),
    filters={"customer_id": "customers"},
    clock=("as_of",),
)


# Pipeline ---------------------------------------------------------------------------


class NoParams(Params, kw_only=True):
    """No parameters."""


class GapRow(Row, kw_only=True):
    """Stream sequences that were deleted from the stream before the materializer applied them: their events are missing from every aggregate."""  # noqa: E501 - the API's description

    graphql_name = "StreamGap"
    graphql_fields = {"from_": "fromSequence", "to": "toSequence"}

    from_: BigInt = msgspec.field(name="from")
    to: BigInt
    events: BigInt
    detected_at: dt.datetime


class PipelineRow(Row, kw_only=True):
    """Progress of the materializer through the event stream."""

    graphql_name = "Pipeline"

    version: BigInt
    last_sequence: BigInt
    stream_last_sequence: BigInt
    lag: BigInt
    events_applied: BigInt
    events_rejected: BigInt
    batches: BigInt
    last_event_time: dt.datetime | None
    last_batch_at: dt.datetime | None
    status: Annotated[
        str,
        msgspec.Meta(
            description="The answering materializer's health: ok, degraded or unavailable."
        ),
    ]
    reason: Annotated[str, msgspec.Meta(description="Why the status is what it is ('ok' when ok).")]
    gap_count: Annotated[
        BigInt, msgspec.Meta(description="Gaps recorded since the file was built.")
    ]
    events_missing: Annotated[BigInt, msgspec.Meta(description="Events lost in all recorded gaps.")]
    gaps: Annotated[list[GapRow], msgspec.Meta(description="The latest 100 gaps, newest first.")]
    # Data lifecycle (docs/OPERATIONS.md, "Backup", "Archive and retention"); added later.
    last_backup_at: Annotated[
        dt.datetime | None,
        msgspec.Meta(description="When the newest backup was taken (none: null)."),
    ] = None
    last_backup_sequence: Annotated[
        BigInt | None, msgspec.Meta(description="Last stream sequence the newest backup holds.")
    ] = None
    archive_horizon: Annotated[
        BigInt,
        msgspec.Meta(description="Raw events up to this sequence are in the Parquet archive only."),
    ] = 0
    file_bytes: Annotated[
        BigInt | None, msgspec.Meta(description="Size of the DuckDB file and its WAL.")
    ] = None
    disk_free_bytes: Annotated[
        BigInt | None, msgspec.Meta(description="Free space on the DuckDB file's volume.")
    ] = None


class RejectedParams(Params, kw_only=True):
    """The latest N rejected events."""

    offset: Offset = 0
    limit: PageSize = 50


class RejectedEventRow(Row, kw_only=True):
    """An event the materializer stored as rejected, with its reason."""

    sequence: BigInt
    subject: str
    event_id: str | None
    event_type: str | None
    reason: str
    received_at: dt.datetime
    raw: str


PIPELINE = QuerySpec(
    name="pipeline",
    params=NoParams,
    result=PipelineRow,
    description="Last applied sequence, counters, last event time and lag.",
    doc="applied position, counters, lag, lost data (`gaps`: the latest 100) and the"
    " answering materializer's health (docs/OPERATIONS.md)",
    reads=("pipeline",),
    shape="one",
)
REJECTED_EVENTS = QuerySpec(
    name="rejected_events",
    params=RejectedParams,
    result=list[RejectedEventRow],
    description="Events stored as rejected, newest first, with reasons.",
    doc="newest first; `raw` as text, lossy-decoded",
    reads=("pipeline",),
    shape="top",
)

# Added after the first release: new fields go last, so schema.graphql only grows.

SALES_BY_CHANNEL = QuerySpec(
    name="sales_by_channel",
    params=PagedSalesWindow,
    result=list[ChannelSalesRow],
    description="Sales per channel in [from, to), by net revenue; default the last 24 h.",
    doc="one row per channel with orders in the range, by net revenue desc then channel",
    **_SALES_WINDOW,
)


class SitesParams(Params, kw_only=True):
    """No filters: every site that sent an applied event."""

    offset: Offset = 0
    limit: PageSize = DEFAULT_PAGE


class SiteRow(Row, kw_only=True):
    """One site and the events the materializer applied from it (docs/EVENTS.md, "Sites")."""

    site: Annotated[str, msgspec.Meta(description="The site's name ('' is the central site).")]
    events: Annotated[BigInt, msgspec.Meta(description="Events applied from it.")]
    last_event_time: Annotated[
        dt.datetime | None,
        msgspec.Meta(description="The latest `time` among them."),
    ]


SITES = QuerySpec(
    name="sites",
    params=SitesParams,
    result=list[SiteRow],
    description="Sites events came from, with their applied event counts.",
    doc="one row per site with applied events, by site; `''` is the central site",
    reads=("pipeline",),
)


QUERIES: tuple[QuerySpec, ...] = (  # type: ignore[type-arg]
    SALES_BY_HOUR,
    SALES_SUMMARY,
    TOP_PRODUCTS,
    STOCK_LEVELS,
    LOW_STOCK,
    STOCK_MOVEMENTS,
    AR_AGING,
    OVERDUE_INVOICES,
    PIPELINE,
    REJECTED_EVENTS,
    SALES_BY_CHANNEL,
    SITES,
)
QUERY_NAMES = tuple(spec.name for spec in QUERIES)
BY_NAME = {spec.name: spec for spec in QUERIES}
BY_FIELD = {spec.field: spec for spec in QUERIES}


# Aggregates -------------------------------------------------------------------------

CATALOG = AggregateSpec(
    name="catalog",
    event_types=("product.updated", "customer.updated"),
    raw_tables=("product_events", "customer_events"),
    topics=("products", "customers"),
)
SALES = AggregateSpec(
    name="sales",
    event_types=("order.created", "order.cancelled"),
    raw_tables=("order_events", "order_cancellations"),
    topics=("sales", "customers"),
)
STOCK = AggregateSpec(
    name="stock",
    event_types=("stock.moved",),
    raw_tables=("stock_events",),
    topics=("stock",),
)
RECEIVABLES = AggregateSpec(
    name="receivables",
    event_types=("invoice.issued", "payment.received"),
    raw_tables=("invoice_events", "payment_events"),
    topics=("receivables", "customers"),
)
#: Applied events per site (``SITES``): after the others, which may still reject events.
SITES_SEEN = AggregateSpec(
    name="sites",
    event_types=(),
    raw_tables=(),
    topics=("pipeline",),
)
PIPELINE_STATE = AggregateSpec(
    name="pipeline",
    event_types=(),
    raw_tables=(),
    topics=("pipeline",),
)

#: Applied in this order within a batch's transaction. Catalog first, so a product or
#: customer arriving with the events that mention it is there for the change notice.
AGGREGATES = (CATALOG, SALES, STOCK, RECEIVABLES, SITES_SEEN, PIPELINE_STATE)
#: Every raw table holding applied event ids.
RAW_TABLES = tuple(table for spec in AGGREGATES for table in spec.raw_tables)
