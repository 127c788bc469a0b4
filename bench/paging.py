"""Reading a named query's whole answer, following its ``next_offset`` pages (docs/API.md).

One `Paging` holds the rule for every transport: the bench and the tests ask a
`Store` directly (`query_all`) or the materializer over NATS, and feed each page in.
"""

from __future__ import annotations

from typing import Any

from materializer.store import Store


class Paging:
    """A paged answer being collected: ask for `page`, `add` the reply, until not `more`."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.page = dict(params)
        self.more = True
        self.result: Any = None
        self._rows: list[Any] = []

    def add(self, data: Any, next_offset: int | None) -> None:
        """One reply: a list is a page of rows, anything else is the whole answer."""
        if not isinstance(data, list):
            self.result, self.more = data, False
            return
        self._rows.extend(data)
        if next_offset is None:
            self.result, self.more = self._rows, False
        else:
            self.page["offset"] = next_offset


def query_all(store: Store, name: str, params: dict[str, Any], *, wire: bool = False) -> Any:
    """A named query's whole result from `store`; as JSON-shaped wire objects with `wire`."""
    paging = Paging(params)
    while paging.more:
        result = store.query(name, paging.page)
        paging.add(result.wire if wire else result.data, result.next_offset)
    return paging.result
