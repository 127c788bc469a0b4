"""The process's allocators (docs/OPERATIONS.md, "Memory"): glibc's arenas capped at
start-up, and the free pages they keep after a catch-up handed back to the system.

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
def _libc() -> ctypes.CDLL | None:
    """The C library the process already uses (None where ctypes cannot open it)."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


#: glibc's ``mallopt`` parameter for the most arenas (malloc.h).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (``MALLOC_ARENA_MAX``; 0: leave glibc's
    default); True when set.

    Each thread that allocates gets an arena of its own up to 8 per core, and freed
    memory stays in the arena that held it: the query threads' arenas kept 26 MB free
    where two kept 2.6 to 10 MB (docs/BENCHMARKS.md, "Where the materializer's RSS grows").
    glibc fixes its limit when the ninth arena is made, so this runs before the store
    and the thread pools start. Not glibc (musl, macOS): nothing to do.
    """
    if arenas <= 0:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


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
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
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
