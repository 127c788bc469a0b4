"""What the materializer and the gateway agree on over NATS: names, subjects, messages.

Both processes import this module and nothing else of each other, so the wire format
lives in one place.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

#: JetStream stream the ERP services publish to.
STREAM_NAME = "PULSE_EVENTS"
STREAM_SUBJECTS = ("pulse.events.>",)
EVENT_SUBJECT_PREFIX = "pulse.events."

#: Core-NATS subject of change notices and version heartbeats.
CHANGES_SUBJECT = "pulse.bi.changes"

#: nats.micro service answering named read queries.
QUERY_SERVICE_NAME = "pulse-bi-materializer"
QUERY_QUEUE_GROUP = "pulse-bi-materializer"
QUERY_SUBJECT_PREFIX = "pulse.bi.query."

#: Named read queries (snake_case, one per API query). Request: a JSON object of
#: parameters (see docs/API.md). Reply: a ``QueryReply``.
QUERY_NAMES = (
    "sales_by_hour",
    "sales_summary",
    "top_products",
    "stock_levels",
    "low_stock",
    "stock_movements",
    "ar_aging",
    "overdue_invoices",
    "rejected_events",
    "pipeline",
)

#: Aggregates named in change notices.
AGGREGATES = ("sales", "stock", "receivables", "pipeline")


def query_subject(name: str) -> str:
    """The NATS subject of one named query."""
    return QUERY_SUBJECT_PREFIX + name


class Changes(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Which keys of which aggregates one committed batch touched.

    Hours are ISO-8601 UTC strings of the hour bucket (``2026-11-25T10:00:00+00:00``).
    """

    sales_hours: list[str] = []
    channels: list[str] = []
    skus: list[str] = []
    warehouses: list[str] = []
    customers: list[str] = []
    #: Invoices or payments changed (AR aging depends on all open items).
    receivables: bool = False
    #: Products changed (names, reorder points): top products and stock show them.
    products: bool = False


class ChangeNotice(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Published on ``CHANGES_SUBJECT`` after every committed batch and as a heartbeat.

    ``version`` is the last applied stream sequence; it only grows. A heartbeat
    (``kind="heartbeat"``) carries the current version and no changes: a gateway that
    sees a version it did not get a change notice for has missed one and must refresh.
    """

    version: int
    kind: Literal["change", "heartbeat"] = "change"
    aggregates: list[str] = []
    changes: Changes = msgspec.field(default_factory=Changes)
    last_event_time: str | None = None
    #: Version of the previous notice; lets a listener detect a gap.
    previous_version: int | None = None


class QueryError(msgspec.Struct, kw_only=True):
    """Why a named query could not be answered."""

    code: Literal["bad_request", "unknown_query", "internal", "unavailable"]
    message: str


class QueryReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Reply of a named query.

    ``data`` is the JSON result (a list of rows or an object). Money travels as
    decimal strings so it stays exact; times as ISO-8601 strings. Large lists are
    paged: when ``next_offset`` is set, ask again with ``offset=next_offset``.
    """

    version: int = 0
    data: Any = None
    next_offset: int | None = None
    error: QueryError | None = None


notice_encoder = msgspec.json.Encoder()
notice_decoder = msgspec.json.Decoder(ChangeNotice)
reply_decoder = msgspec.json.Decoder(QueryReply)
