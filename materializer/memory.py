"""Free pages the process's allocators keep after a catch-up, handed back to the system
(docs/OPERATIONS.md, "Memory").

DuckDB's library carries jemalloc for its own memory: pages DuckDB freed stay resident
until jemalloc purges them, which it does only while DuckDB allocates (its background
threads are off). glibc keeps the free pages inside its heaps until ``malloc_trim``.
Both are asked here, through the C functions the process already has loaded: DuckDB's
library exports jemalloc's ``mallctl`` as ``duckdb_je_mallctl``. Builds without either
(macOS, Windows, musl) have nothing to do.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

#: jemalloc's name for "every arena" in ``arena.<i>.purge`` (its MALLCTL_ARENAS_ALL).
_ALL_ARENAS = 4096


@functools.cache
def _purges() -> tuple[Callable[[], object], ...]:
    """The calls that hand free pages back, found once: jemalloc's, then glibc's."""
    found: list[Callable[[], object]] = []
    try:
        import _duckdb  # DuckDB's compiled module, loaded with duckdb: the same library

        mallctl = ctypes.CDLL(str(_duckdb.__file__)).duckdb_je_mallctl
    except (ImportError, OSError, AttributeError):
        pass
    else:
        mallctl.restype = ctypes.c_int
        mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
        mallctl.argtypes += [ctypes.c_void_p, ctypes.c_size_t]
        purge = f"arena.{_ALL_ARENAS}.purge".encode()
        found.append(lambda: mallctl(purge, None, None, None, 0))
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process already uses
    except (OSError, AttributeError):
        pass
    else:
        trim.restype = ctypes.c_int
        trim.argtypes = [ctypes.c_size_t]
        found.append(lambda: trim(0))
    return tuple(found)


def release_free_pages() -> int:
    """Ask jemalloc (DuckDB's) and glibc to return their free pages; the number of
    allocators that were asked."""
    for purge in _purges():
        purge()
    return len(_purges())
