"""What the materializer and the gateway agree on: the wire and the registry.

``wire`` holds subjects and messages; ``spec`` the shape of a declaration; ``registry``
every named query and aggregate, declared once (docs/ARCHITECTURE.md).
"""

from pulse_bi.contract.registry import AGGREGATES, BY_FIELD, BY_NAME, QUERIES, QUERY_NAMES
from pulse_bi.contract.spec import AggregateSpec, BigInt, Money, QuerySpec
from pulse_bi.contract.wire import (
    CHANGES_SUBJECT,
    EVENT_SUBJECT_PREFIX,
    FLAG_TOPICS,
    MIN_VERSION_HEADER,
    QUERY_QUEUE_GROUP,
    QUERY_SERVICE_NAME,
    QUERY_SUBJECT_PREFIX,
    SITE_HEADER,
    STREAM_NAME,
    STREAM_SUBJECTS,
    TOPICS,
    ChangeNotice,
    Changes,
    QueryError,
    QueryReply,
    UtcTime,
    notice_decoder,
    notice_encoder,
    query_subject,
    reply_decoder,
    to_wire,
    wire_encoder,
)

__all__ = [
    "AGGREGATES",
    "BY_FIELD",
    "BY_NAME",
    "CHANGES_SUBJECT",
    "EVENT_SUBJECT_PREFIX",
    "FLAG_TOPICS",
    "MIN_VERSION_HEADER",
    "QUERIES",
    "QUERY_NAMES",
    "QUERY_QUEUE_GROUP",
    "QUERY_SERVICE_NAME",
    "QUERY_SUBJECT_PREFIX",
    "SITE_HEADER",
    "STREAM_NAME",
    "STREAM_SUBJECTS",
    "TOPICS",
    "AggregateSpec",
    "BigInt",
    "ChangeNotice",
    "Changes",
    "Money",
    "QueryError",
    "QueryReply",
    "QuerySpec",
    "UtcTime",
    "docs",
    "notice_decoder",
    "notice_encoder",
    "query_subject",
    "registry",
    "reply_decoder",
    "to_wire",
    "wire_encoder",
]
