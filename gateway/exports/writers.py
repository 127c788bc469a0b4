"""Streaming CSV, XLSX and Parquet writers of flat tables (docs/EXPORTS.md, "Formats").

A writer takes pages of flat rows and gives back the bytes that can be sent now, so an
export never holds more than a page: CSV and Parquet bytes follow each page (Parquet one
row group per page); XLSX is a zip whose directory comes last, so XlsxWriter writes the
rows to a temporary file in ``constant_memory`` mode and the finished file is streamed
from disk in chunks. Writers are synchronous: the caller runs them off the event loop.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter

from gateway.exports.table import Column, Kind, as_text

FORMATS = ("csv", "xlsx", "parquet")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}
#: Data rows per XLSX worksheet (the format's 1,048,576 rows, less the header); more
#: rows continue on a new worksheet with the same header.
XLSX_SHEET_ROWS = 1_048_575
_CHUNK = 256 * 1024
#: Bounds below which an XLSX number cell (an IEEE double) keeps an integer, and a money
#: amount read back to two decimals (15 significant digits), exactly; values beyond them
#: are written as text so no digit is lost.
_EXACT_INT = 2**53
_EXACT_MONEY = Decimal(10**13)


class Writer(Protocol):
    """Pages of flat rows in, bytes out."""

    def start(self) -> bytes:
        """Bytes before the first row (a CSV header)."""
        ...

    def write(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        """One page of rows; the bytes ready to send."""
        ...

    def finish(self) -> Iterator[bytes]:
        """The remaining bytes, in chunks."""
        ...

    def close(self) -> None:
        """Free what the writer holds (temporary files) whether or not it finished."""
        ...


def writer(fmt: str, columns: Sequence[Column]) -> Writer:
    """A writer of ``fmt`` (one of FORMATS)."""
    if fmt == "csv":
        return CsvWriter(columns)
    if fmt == "xlsx":
        return XlsxWriter(columns)
    if fmt == "parquet":
        return ParquetWriter(columns)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


class CsvWriter:
    """RFC 4180 CSV in UTF-8: a header row of human-readable names, values as text.

    Money is written as its exact decimal (``1234.50``), times as ISO-8601 in UTC.
    """

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self._kinds: tuple[Kind, ...] = tuple(c.kind for c in columns)
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")

    def _drain(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")

    def start(self) -> bytes:
        self._csv.writerow([c.header for c in self.columns])
        return self._drain()

    def write(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        kinds = self._kinds
        self._csv.writerows(
            [as_text(kind, value) for kind, value in zip(kinds, row, strict=True)] for row in rows
        )
        return self._drain()

    def finish(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        self._buffer.close()


_ARROW_TYPES: dict[Kind, pa.DataType] = {
    "money": pa.decimal128(38, 2),
    "time": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "text": pa.string(),
}


class _Sink:
    """A write-only file that keeps what was written until drained."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


class ParquetWriter:
    """Parquet with typed columns: money ``decimal128(38, 2)``, times ``timestamp[us, UTC]``,
    dates ``date32``; column names are the wire names, one row group per page."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self.schema = pa.schema(
            [pa.field(c.name, _ARROW_TYPES[c.kind], nullable=True) for c in columns],
            metadata={f"header:{c.name}": c.header for c in columns},
        )
        self._sink = _Sink()
        self._writer = pq.ParquetWriter(pa.PythonFile(self._sink, mode="w"), self.schema)
        self._closed = False

    def start(self) -> bytes:
        return self._sink.drain()

    def write(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        if not rows:
            return b""
        arrays = [
            pa.array([row[i] for row in rows], type=self.schema.field(i).type)
            for i in range(len(self.columns))
        ]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        return self._sink.drain()

    def finish(self) -> Iterator[bytes]:
        self._writer.close()
        self._closed = True
        yield self._sink.drain()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._writer.close()


class XlsxWriter:
    """XLSX by XlsxWriter in ``constant_memory`` mode, rows kept in a temporary file.

    Money is a number cell formatted ``0.00``; times and dates are ISO-8601 text in UTC
    (exact, the same in every locale, and year 1 fits, which Excel's date serials do not);
    text is always a string cell (never a formula, whatever it starts with).
    """

    def __init__(self, columns: Sequence[Column], sheet_rows: int = XLSX_SHEET_ROWS) -> None:
        self.columns = tuple(columns)
        self.sheet_rows = sheet_rows
        fd, self.path = tempfile.mkstemp(prefix="pulse-bi-export-", suffix=".xlsx")
        os.close(fd)
        self._book = xlsxwriter.Workbook(
            self.path,
            {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False},
        )
        self._header = self._book.add_format({"bold": True})
        self._money = self._book.add_format({"num_format": "0.00"})
        self._sheets = 0
        self._row = 0
        self._sheet: Any = None
        self._file: Any = None
        self._new_sheet()

    def _new_sheet(self) -> None:
        self._sheets += 1
        self._sheet = self._book.add_worksheet(f"Sheet{self._sheets}")
        for i, column in enumerate(self.columns):
            self._sheet.write_string(0, i, column.header, self._header)
            width = max(10, min(40, len(column.header) + 2))
            self._sheet.set_column(i, i, width)
        self._sheet.freeze_panes(1, 0)
        self._row = 0

    def start(self) -> bytes:
        return b""

    def write(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        kinds = [c.kind for c in self.columns]
        for row in rows:
            if self._row >= self.sheet_rows:
                self._new_sheet()
            self._row += 1
            sheet, r = self._sheet, self._row
            for i, (kind, value) in enumerate(zip(kinds, row, strict=True)):
                if value is None:
                    continue
                if kind == "money":
                    amount = Decimal(value)
                    if abs(amount) < _EXACT_MONEY:
                        sheet.write_number(r, i, float(amount), self._money)
                    else:  # a double would round it: exact text instead
                        sheet.write_string(r, i, str(amount))
                elif kind == "int":
                    if abs(int(value)) <= _EXACT_INT:
                        sheet.write_number(r, i, int(value))
                    else:
                        sheet.write_string(r, i, str(int(value)))
                elif kind == "bool":
                    sheet.write_boolean(r, i, bool(value))
                else:
                    sheet.write_string(r, i, as_text(kind, value))
        return b""

    def finish(self) -> Iterator[bytes]:
        self._book.close()
        self._book = None
        with open(self.path, "rb") as file:
            while chunk := file.read(_CHUNK):
                yield chunk

    def close(self) -> None:
        if self._book is not None:
            with contextlib.suppress(Exception):
                self._book.close()
            self._book = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
