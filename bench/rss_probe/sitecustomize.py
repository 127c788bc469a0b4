"""Allocator figures from inside a ``pulse-bi materializer`` run by ``bench.bench_rss
--allocators``: this folder goes on the process's ``PYTHONPATH``, so Python imports this
module at start-up (``site``).

With ``RSS_PROBE`` naming a folder, a daemon thread waits for ``<folder>/<pid>.go`` and
answers with ``<folder>/<pid>.txt``: CPython's small-object allocator
(``sys._debugmallocstats``) and glibc's (``malloc_stats``), both of which print to the
C ``stderr``, caught by pointing file descriptor 2 at the file for the moment; then the
jemalloc that DuckDB's library carries for its own memory (``stats.*`` through its
``mallctl``, exported as ``duckdb_je_mallctl``), one ``jemalloc <name> = <bytes>`` line each;
and under tracemalloc, the lines of code holding most live memory.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from pathlib import Path


def _dump(target: Path) -> None:
    libc = ctypes.CDLL("libc.so.6")
    partial = target.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(2)
    try:
        libc.fflush(None)
        os.dup2(fd, 2)
        sys._debugmallocstats()
        libc.malloc_stats()
        libc.fflush(None)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    with partial.open("a") as report:
        for name, value in _jemalloc().items():
            report.write(f"jemalloc {name} = {value}\n")
        report.writelines(_traced())
    partial.rename(target)


def _jemalloc() -> dict[str, int]:
    """DuckDB's jemalloc statistics, refreshed (empty when the library has none)."""
    import _duckdb  # DuckDB's compiled module, loaded already: the same library

    mallctl = getattr(ctypes.CDLL(str(_duckdb.__file__)), "duckdb_je_mallctl", None)
    if mallctl is None:
        return {}
    mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
    mallctl.argtypes += [ctypes.c_void_p, ctypes.c_size_t]
    epoch = ctypes.c_uint64(1)
    size = ctypes.c_size_t(ctypes.sizeof(epoch))
    mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), size)
    figures = {}
    for name in ("allocated", "active", "resident", "mapped", "retained"):
        value = ctypes.c_size_t()
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0) == 0:
            figures[name] = value.value
    return figures


def _traced(count: int = 8) -> list[str]:
    """The lines holding most live memory, when the process runs under tracemalloc
    (``PYTHONTRACEMALLOC=N``): ``traced <MB> MB <blocks> blocks <file>:<line>``."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return []
    top = tracemalloc.take_snapshot().statistics("lineno")[:count]
    return [f"traced {s.size / 2**20:.2f} MB {s.count} blocks {s.traceback[0]}\n" for s in top]


def _watch(folder: Path) -> None:
    trigger = folder / f"{os.getpid()}.go"
    while True:
        time.sleep(0.5)
        if trigger.exists():
            trigger.unlink()
            _dump(folder / f"{os.getpid()}.txt")


if os.environ.get("RSS_PROBE"):
    threading.Thread(target=_watch, args=(Path(os.environ["RSS_PROBE"]),), daemon=True).start()
