"""Which failures are the infrastructure's, and which are one event's.

Two kinds of failure reach the writer, and they are handled in opposite ways
(docs/EVENTS.md, "Dead letters"; docs/OPERATIONS.md, "Faults"):

- **An event's**: applying a batch fails because of what one event holds (a value a
  statement cannot take, a bug an input triggers). The batch is rolled back and split to
  find the event; it is stored as rejected (``internal: …``) and the rest is applied.
  Ingest goes on.
- **The infrastructure's**: the disk is full, a file cannot be read or written, memory
  ran out, the lock is lost. No event is at fault and rejecting one would lose it. The
  batch is rolled back, the process stays up and reports the cause as unhealthy, and
  retries with backoff until the fault clears, then resumes exactly where it stopped.
"""

from __future__ import annotations

import errno
import re

import duckdb

#: DuckDB exception classes that say the machine, not the data, failed.
_DUCKDB_INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    duckdb.IOException,
    duckdb.OutOfMemoryException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.PermissionException,
    # A missing table or column is the file's state (tampered with, half migrated),
    # never one event's: dead-lettering would reject every event that follows.
    duckdb.CatalogException,
)

#: Words in a DuckDB message that name a fault of the machine whatever its class.
_INFRASTRUCTURE_WORDS = (
    "no space left on device",
    "could not write",
    "could not read",
    "could not open",
    "could not fsync",
    "disk full",
    "out of memory",
    "database has been invalidated",
)


class InfrastructureError(Exception):
    """A fault of the disk, the memory or the file, with the real cause in its message."""


def is_infrastructure(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the machine (retry) rather than of an event (reject)."""
    if isinstance(exc, InfrastructureError | MemoryError):
        return True
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, _DUCKDB_INFRASTRUCTURE):
        return True
    message = str(exc).lower()
    return any(words in message for words in _INFRASTRUCTURE_WORDS)


#: DuckDB's words for a full disk: 'Could not write file "<path>": No space left on device'.
_DUCKDB_NO_SPACE = re.compile(r'file "(?P<path>[^"]+)": No space left on device', re.IGNORECASE)


def describe(exc: BaseException) -> str:
    """The real cause in one line, e.g. ``no space left on device at /data/pulse.duckdb``."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" at {exc.filename}" if exc.filename else ""
        return f"no space left on device{where}"
    text = " ".join(str(exc).split())
    full = _DUCKDB_NO_SPACE.search(text)
    if full is not None:
        return f"no space left on device at {full['path']}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
