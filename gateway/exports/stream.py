"""Page through a named query and stream it through a writer (docs/EXPORTS.md, "Streaming").

The materializer is asked one page at a time (``offset``/``limit``, at most 5,000 rows);
each page is flattened and written before the next is asked for, so memory holds one
page whatever the export's size. The first page is asked before anything is sent: an
error there (bad parameters, no materializer) is an ordinary error response.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from gateway.exports.params import ExportParams
from gateway.exports.table import Table, table
from gateway.exports.writers import Writer, writer
from pulse_bi.contract import QueryReply, to_wire

#: Rows asked for in one request (the largest page the materializer answers).
PAGE_ROWS = 5000

#: One named-query request: (name, wire params) -> typed reply.
Request = Callable[[str, dict[str, Any]], Awaitable[QueryReply]]


class TooManyRows(Exception):
    """The export passed its row cap; narrow it or raise the cap."""


async def pages(
    request: Request, params: ExportParams, max_rows: int, page_rows: int = PAGE_ROWS
) -> AsyncGenerator[list[Any], None]:
    """The query's typed rows, one materializer page at a time.

    A list without offset/limit (or a single struct) is one request. A list with them is
    asked page by page from ``params.offset``, following ``next_offset`` for paged lists
    and stopping at a short page for top-N lists, until ``params.limit`` rows (all rows
    when no limit was given). Passing ``max_rows`` raises TooManyRows.
    """
    spec = params.spec
    name = spec.name
    if not params.paged:
        reply = await request(name, to_wire(params.struct()))
        data = reply.data
        if spec.shape == "one":
            yield [] if data is None else [data]
        else:
            yield list(data or [])
        return
    wanted = params.limit
    offset, sent = params.offset, 0
    while True:
        ask = page_rows if wanted is None else min(page_rows, wanted - sent)
        reply = await request(name, to_wire(params.struct(offset=offset, limit=ask)))
        rows = list(reply.data or [])
        if wanted is None and sent + len(rows) > max_rows:
            raise TooManyRows(f"{name}: more than {max_rows} rows; narrow the export")
        sent += len(rows)
        if rows:
            yield rows
        if wanted is not None and sent >= wanted:
            return
        if spec.shape == "page":
            if reply.next_offset is None:
                return
            offset = reply.next_offset
        else:  # a top-N list: no next_offset, a short page is the end
            if len(rows) < ask:
                return
            offset += len(rows)


def file_name(params: ExportParams, fmt: str, now: dt.datetime | None = None) -> str:
    """``<query>_<range>.<fmt>``: the window (``20261125T1000Z-20261126T1000Z``), the as-of
    date, or else the time of the export."""
    spec, values = params.spec, params.values

    def stamp(value: dt.datetime) -> str:
        return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%MZ")

    if spec.window is not None:
        start, end = (values[name] for name in spec.window)
        part = f"{stamp(start)}-{stamp(end)}"
    elif isinstance(values.get("as_of"), dt.date):
        part = values["as_of"].isoformat()
    else:
        part = stamp(now or dt.datetime.now(dt.UTC))
    return f"{spec.name}_{part}.{fmt}"


class Export:
    """One export in progress: its table, its writer and its pages."""

    def __init__(
        self,
        request: Request,
        params: ExportParams,
        fmt: str,
        max_rows: int,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        self.params = params
        self.format = fmt
        self.table: Table = table(params.spec)
        self.writer: Writer = writer(fmt, self.table.columns)
        self.rows = 0
        self._pages = pages(request, params, max_rows, page_rows)
        self._first: list[Any] | None = None

    async def open(self) -> None:
        """Ask the first page (errors raise here, before any byte is sent)."""
        try:
            self._first = await anext(self._pages)
        except StopAsyncIteration:
            self._first = []
        except BaseException:
            self.writer.close()
            raise

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes; writing runs in a worker thread, off the event loop."""
        try:
            head = await asyncio.to_thread(self.writer.start)
            if head:
                yield head
            first, self._first = self._first or [], None
            chunk = await asyncio.to_thread(self._write, first)
            if chunk:
                yield chunk
            async for page in self._pages:
                chunk = await asyncio.to_thread(self._write, page)
                if chunk:
                    yield chunk
            tail = self.writer.finish()
            while True:
                part = await asyncio.to_thread(next, tail, None)
                if part is None:
                    break
                if part:
                    yield part
        finally:
            await self._pages.aclose()
            await asyncio.to_thread(self.writer.close)

    def _write(self, page: list[Any]) -> bytes:
        flat = list(self.table.rows(page))
        self.rows += len(flat)
        return self.writer.write(flat)
