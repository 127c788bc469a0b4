"""Allocator figures from inside a ``pulse-bi materializer`` run by ``bench.bench_rss
--allocators``: this folder goes on the process's ``PYTHONPATH``, so Python imports this
module at start-up (``site``).

With ``RSS_PROBE`` naming a folder, a daemon thread waits for ``<folder>/<pid>.go`` and
answers with ``<folder>/<pid>.txt``: CPython's small-object allocator
(``sys._debugmallocstats``) and glibc's (``malloc_stats``), both of which print to the
C ``stderr``, caught by pointing file descriptor 2 at the file for the moment; then the
jemalloc that DuckDB's library carries for its own memory (``stats.*`` through its
``mallctl``, exported as ``duckdb_je_mallctl``), one ``jemalloc <name> = <bytes>`` line each;
and under tracemalloc, the lines of code holding most live memory and those whose
objects keep mostly empty arenas (``_pinning``).
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
        report.writelines(_pinning())
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


def _pinning(count: int = 8, sparse: float = 0.25) -> list[str]:
    """Under tracemalloc, where the few live objects that keep mostly empty pymalloc
    arenas were allocated: an arena goes back to the system only once its last object
    is freed, so one survivor of a catch-up's peak keeps a whole MiB resident.

    Approximate by design: the objects seen are those the collector tracks and what
    they refer to directly, each counted in the MiB of addresses it starts in (an arena
    spans one or two), and only those tracemalloc saw allocated (not the interpreter's
    static objects). For the allocation tracebacks found in MiB less than ``sparse``
    full, ``pinning <a> MiB alone, in <n> MiB, <objects> objects <bytes> bytes <frames>:
    <kinds>``: alone in ``a`` of them (freeing those objects would free those MiB), present
    in ``n``; ranked by ``a``.
    """
    import collections
    import gc
    import tracemalloc

    if not tracemalloc.is_tracing():
        return []
    found: dict[int, object] = {}
    for obj in gc.get_objects():
        found[id(obj)] = obj
        for ref in gc.get_referents(obj):
            found.setdefault(id(ref), ref)
    mib: dict[int, list[tuple[int, object]]] = collections.defaultdict(list)
    for address, obj in found.items():
        try:
            size = sys.getsizeof(obj)
        except TypeError:
            continue
        if size <= 512:  # pymalloc's largest block
            mib[address >> 20].append((size, obj))
    del found
    #: traceback → [sparse MiB where its objects are the only ones traced, sparse MiB
    #: holding any, objects, bytes]
    culprits: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    kinds: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    sparse_mib = 0
    for objects in mib.values():
        if sum(size for size, _ in objects) >= sparse * 2**20:
            continue
        sparse_mib += 1
        here: set[str] = set()
        for size, obj in objects:
            traceback = tracemalloc.get_object_traceback(obj)
            if traceback is None:
                continue
            where = " < ".join(str(frame) for frame in traceback)
            entry = culprits[where]
            entry[2] += 1
            entry[3] += size
            kinds[where][_kind(obj)] += 1
            here.add(where)
        for where in here:
            culprits[where][0] += len(here) == 1
            culprits[where][1] += 1
    ranked = sorted(culprits.items(), key=lambda item: (-item[1][0], -item[1][1]))[:count]
    summary = f"{len(mib)} MiB hold small objects, {sparse_mib} under {sparse:.0%} full"
    lines = [f"pinning summary: {summary}\n"]
    for where, (alone, n, k, b) in ranked:
        common = ", ".join(f"{kind} x{times}" for kind, times in kinds[where].most_common(4))
        lines.append(
            f"pinning {alone} MiB alone, in {n} MiB, {k} objects {b} bytes {where}: {common}\n"
        )
    return lines


def _kind(obj: object) -> str:
    """An object's type, with a glimpse of its value for strings and numbers."""
    if isinstance(obj, (str, bytes, int, float)):
        return f"{type(obj).__name__} {obj!r:.40}"
    return type(obj).__name__


def _watch(folder: Path) -> None:
    trigger = folder / f"{os.getpid()}.go"
    while True:
        time.sleep(0.5)
        if trigger.exists():
            trigger.unlink()
            _dump(folder / f"{os.getpid()}.txt")


if os.environ.get("RSS_PROBE"):
    threading.Thread(target=_watch, args=(Path(os.environ["RSS_PROBE"]),), daemon=True).start()
