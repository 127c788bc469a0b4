"""The response-size budget of one request, charged as rows arrive (docs/GATEWAY.md).

Rows are measured before any object or response is built from them, so a request whose
rows alone pass GATEWAY_MAX_RESPONSE_BYTES is refused without building its answer. The
size of a long list is estimated from a few rows (first, middle, last) times its length.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import ResponseTooLarge

_measure = msgspec.json.Encoder(decimal_format="number")
#: Lists up to this length are measured whole; longer ones from a sample of rows.
_SAMPLE_FROM = 16


def estimated_bytes(data: Any) -> int:
    """JSON size of a named query's data (exact for short lists, sampled for long ones)."""
    if isinstance(data, list) and len(data) > _SAMPLE_FROM:
        sample = (data[0], data[len(data) // 2], data[-1])
        per_row = sum(len(_measure.encode(row)) + 1 for row in sample) / len(sample)
        return int(per_row * len(data))
    return len(_measure.encode(data))


class Budget:
    """Bytes one response may take; `charge` raises ResponseTooLarge once they are spent."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def charge(self, data: Any) -> None:
        """Count the rows of one named-query result against the budget."""
        self.spent += estimated_bytes(data)
        if self.spent > self.limit:
            raise ResponseTooLarge(too_large_message(self.spent, self.limit, fetched=True))


def too_large_message(size: int, limit: int, *, fetched: bool = False) -> str:
    """The message of RESPONSE_TOO_LARGE."""
    what = "The rows fetched for this response take" if fetched else "The response takes"
    return (
        f"{what} {size} bytes, more than {limit} (GATEWAY_MAX_RESPONSE_BYTES): "
        "narrow the query (fewer fields, a smaller range or limit, fewer aliases)."
    )
