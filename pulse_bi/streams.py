"""The JetStream stream the ERP events live in, configured in one place.

The simulator and the materializer both call :func:`ensure_stream`, so whichever starts
first creates the stream with the same settings.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from pulse_bi.contract import STREAM_NAME, STREAM_SUBJECTS

#: Seconds during which JetStream drops a message whose Nats-Msg-Id it has already stored.
DEFAULT_DUPLICATE_WINDOW = 120.0


def stream_config(
    *,
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
    max_age: float = 0.0,
    replicas: int = 1,
) -> StreamConfig:
    """The configuration of the PULSE_EVENTS stream (``max_age`` in seconds, 0: none;
    ``replicas``: copies on a cluster, docs/SCALING.md)."""
    return StreamConfig(
        name=STREAM_NAME,
        subjects=list(STREAM_SUBJECTS),
        # The stream is the source of truth the aggregates are rebuilt from: keep it on
        # disk and keep every event (limits retention), or, with a ``max_age``, every event
        # the Parquet archive has not taken yet (docs/OPERATIONS.md, "Archive and retention").
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=duplicate_window,
        max_age=max_age or None,
        num_replicas=replicas,
    )


async def ensure_stream(
    js: JetStreamContext,
    *,
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
    max_age: float = 0.0,
    replicas: int = 1,
) -> StreamInfo:
    """Create the PULSE_EVENTS stream unless it exists; return its info.

    An existing stream is left as it is: its operator may have tuned limits.
    """
    try:
        return await js.stream_info(STREAM_NAME)
    except NotFoundError:
        pass
    try:
        return await js.add_stream(
            stream_config(duplicate_window=duplicate_window, max_age=max_age, replicas=replicas)
        )
    except APIError:
        # Another process created it in the meantime, perhaps with other settings.
        return await js.stream_info(STREAM_NAME)
