"""What travels over NATS: subjects, change notices, query replies.

The materializer and the gateway import ``pulse_bi.contract`` and nothing of each other,
so the wire format lives in one place (docs/API.md, "Named queries", "Change notices").
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

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
#: Request header: the lowest version the asker will serve (docs/SCALING.md, "Monotonic
#: reads"); a replica below it waits briefly before answering.
MIN_VERSION_HEADER = "Pulse-Min-Version"
#: Message header naming the site an event was taken at (docs/SCALING.md, "Many
#: sites"); without it an event belongs to the empty site, the central one.
SITE_HEADER = "Pulse-Site"
#: A site's name: 1 to ``MAX_SITE_LENGTH`` ASCII letters, digits, ``-`` or ``_`` (a
#: JetStream domain and server name; docs/EVENTS.md, "Limits").
MAX_SITE_LENGTH = 64
#: The ``site`` parameter's pattern (msgspec searches it: ``\Z``, since ``$`` would also
#: match before a trailing newline).
SITE_PATTERN = r"^[A-Za-z0-9_-]*\Z"


def query_subject(name: str) -> str:
    """The NATS subject of one named query."""
    return QUERY_SUBJECT_PREFIX + name


class Changes(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Which keys of which aggregates one committed batch touched.

    Hours are ISO-8601 UTC strings of the hour bucket (``2026-11-25T10:00:00+00:00``).
    The materializer's batch fills one of these as its aggregates apply events (lists
    may repeat keys until ``normalized``); the gateway reads it to decide which live
    queries a notice may change (``QuerySpec.filters``). Every key is listed here once.
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

    def normalized(self) -> Changes:
        """Each key list sorted, without repeats."""
        values: dict[str, Any] = {
            name: sorted(set(value)) if isinstance(value, list) else value
            for name, value in msgspec.structs.asdict(self).items()
        }
        return Changes(**values)

    def merged(self, other: Changes) -> Changes:
        """The keys of both (two halves of a split batch), normalized."""
        theirs = msgspec.structs.asdict(other)
        values: dict[str, Any] = {
            name: [*value, *theirs[name]] if isinstance(value, list) else value or theirs[name]
            for name, value in msgspec.structs.asdict(self).items()
        }
        return Changes(**values).normalized()

    def topics(self) -> set[str]:
        """The change topics (``TOPICS``) its flags and key lists name."""
        return {topic for key, topic in FLAG_TOPICS.items() if getattr(self, key)}


#: What a live query can depend on: the aggregates a notice names, plus the catalog
#: facts that other aggregates join at read time (docs/API.md, "Change notices").
TOPICS = ("sales", "stock", "receivables", "pipeline", "products", "customers")
#: ``Changes`` fields that, when set or non-empty, name a topic of their own.
FLAG_TOPICS = {"receivables": "receivables", "products": "products", "customers": "customers"}


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

    def topics(self) -> set[str]:
        """The topics this notice says changed."""
        return {a for a in self.aggregates if a in TOPICS} | self.changes.topics()


class QueryError(msgspec.Struct, kw_only=True):
    """Why a named query could not be answered."""

    code: Literal["bad_request", "unknown_query", "internal", "unavailable"]
    message: str


Data = TypeVar("Data")


class QueryReply(msgspec.Struct, Generic[Data], kw_only=True, omit_defaults=True):
    """Reply of a named query.

    ``data`` is the query's result type (``QuerySpec.result``: a list of row structs or
    one struct). Money travels as decimal strings so it stays exact; times as ISO-8601
    strings with offset. Large lists are paged: when ``next_offset`` is set, ask again
    with ``offset=next_offset``.
    """

    version: int = 0
    data: Data | None = None
    next_offset: int | None = None
    error: QueryError | None = None
    #: CPU seconds the answering materializer's query thread spent on this reply, not
    #: counting the wait for a thread: what a gateway charges to a live query's share of
    #: the time (docs/GATEWAY.md, "A group's window"). None: not said.
    cpu_seconds: float | None = None


class UtcTime(dt.datetime):
    """A UTC time the materializer sends; the wire writes it ``+00:00`` (docs/API.md).

    msgspec writes a plain datetime with ``Z``; this subclass goes through ``enc_hook``.
    Row fields are typed ``datetime``, so the gateway decodes plain datetimes.
    """

    @classmethod
    def of(cls, value: dt.datetime) -> UtcTime:
        """The same instant as a ``UtcTime`` (a naive value counts as UTC)."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return cls(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=dt.UTC,
        )


def _encode_extra(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def to_wire(value: Any, *, exact_numbers: bool = False) -> Any:
    """``value`` (structs, rows, parameters) as the JSON-shaped Python objects the wire
    carries: times as ISO-8601 with ``+00:00``, money as decimal strings, or kept as
    ``Decimal`` with ``exact_numbers`` (for an encoder that writes them as numbers)."""
    keep = (dt.datetime, Decimal) if exact_numbers else (dt.datetime,)
    return _times(msgspec.to_builtins(value, builtin_types=keep, enc_hook=_encode_extra))


def _times(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_times(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


wire_encoder = msgspec.json.Encoder(enc_hook=_encode_extra)
notice_encoder = wire_encoder
notice_decoder = msgspec.json.Decoder(ChangeNotice)
reply_decoder = msgspec.json.Decoder(QueryReply[Any])
