"""RSS of real ``pulse-bi materializer`` processes after a catch-up, code side by side.

    python -m bench.bench_rss --events 5000000 --code main=../main-checkout --code this=.

One stream of ``--events`` simulated events, then one materializer process per
``--code`` (its checkout first on ``PYTHONPATH``), all started at once on their own
files so they share the load: when each has applied the whole stream, and again
``--settle`` seconds later, its RSS, the file-backed part of it (``RssFile``: shared
library pages), the anonymous part and USS. ``--env NAME=VALUE`` applies to every
process (e.g. ``DUCKDB_MEMORY_LIMIT=64MB``); ``--code name=path:NAME=VALUE`` to one.
``--allocators`` adds, at the second look, what CPython's small-object allocator,
glibc's malloc and DuckDB's jemalloc hold and use in each process (``bench/rss_probe``),
and with ``PYTHONTRACEMALLOC=N`` in its environment the lines holding most live memory
and the allocations that keep mostly empty small-object arenas.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from subprocess import Popen
from typing import Any

import psutil

from bench.bench_ingest import machine, prefill
from pulse_bi.natsserver import LocalNatsServer, free_port

MB = 2**20
PROBE = Path(__file__).parent / "rss_probe"


def figures(pid: int) -> dict[str, float]:
    """RSS, RssFile, RssAnon and USS of ``pid`` in MB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kb = {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "RssFile", "RssAnon")}
    uss = psutil.Process(pid).memory_full_info().uss / MB
    return {"rss": kb["VmRSS"], "file": kb["RssFile"], "anon": kb["RssAnon"], "uss": uss}


def mappings(pid: int, count: int) -> list[tuple[float, str]]:
    """The ``count`` mapped files (or ``[heap]``, ``[anon]``) holding most of the RSS, MB."""
    sizes: dict[str, int] = {}
    current = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            current = head[5] if len(head) > 5 else "[anon]"
        elif head[0] == "Rss:":
            sizes[current] = sizes.get(current, 0) + int(head[1])
    ranked = sorted(sizes.items(), key=lambda item: -item[1])[:count]
    return [(kb / 1024, Path(name).name if name.startswith("/") else name) for name, kb in ranked]


def _number(text: str, pattern: str) -> float:
    """The number after ``pattern`` in a ``bench/rss_probe`` report, in MB for bytes."""
    found = re.search(pattern + r"\s*=\s*([\d,]+)", text)
    return int(found.group(1).replace(",", "")) / MB if found else float("nan")


def allocators(probe: Path, pid: int) -> str:
    """One line from the process's ``bench/rss_probe`` report, asked for and waited on."""
    report = probe / f"{pid}.txt"
    (probe / f"{pid}.go").touch()
    deadline = time.monotonic() + 30
    while not report.exists():
        if time.monotonic() > deadline:
            return "no allocator report within 30 s"
        time.sleep(0.2)
    text = report.read_text(errors="replace")
    arenas = re.search(r"# arenas allocated current\s*=\s*(\d+)", text)
    held = _number(text, r"arenas \* \d+ bytes/arena")
    blocks = _number(text, "# bytes in allocated blocks")
    glibc = text[text.find("Total (incl. mmap)") :]
    system, used = _number(glibc, "system bytes"), _number(glibc, "in use bytes")
    duckdb = {name: _number(text, f"jemalloc {name}") for name in ("resident", "allocated")}
    traced = [line for line in text.splitlines() if line.startswith(("traced ", "pinning "))]
    return "\n          ".join(
        [
            f"pymalloc {arenas.group(1) if arenas else '?'} arenas {held:.1f} MB,"
            f" {blocks:.1f} MB in blocks; glibc {system:.1f} MB from the system, {used:.1f} MB"
            f" in use; DuckDB's jemalloc {duckdb['resident']:.1f} MB resident,"
            f" {duckdb['allocated']:.1f} MB allocated",
            *traced,
        ]
    )


def last_sequence(port: int) -> int:
    """The process's applied sequence from ``/stats`` (-1 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2) as response:
            return int(json.load(response)["last_sequence"] or 0)
    except OSError:
        return -1


def show(name: str, when: str, values: dict[str, float]) -> None:
    """One line."""
    print(
        f"{name:>8} {when:<24} RSS {values['rss']:6.1f}  file {values['file']:6.1f}"
        f"  anon {values['anon']:6.1f}  USS {values['uss']:6.1f} MB",
        flush=True,
    )


def run(args: argparse.Namespace, url: str, root: Path, last: int) -> None:
    """Start every process, sample each when caught up and ``--settle`` s later."""
    common = dict(item.split("=", 1) for item in args.env)
    probe = root / "probe"
    if args.allocators:
        probe.mkdir()
        common["RSS_PROBE"] = str(probe)
    processes: dict[str, tuple[Popen[bytes], int]] = {}
    for spec in args.code:
        name, _, rest = spec.partition("=")
        path, *overrides = rest.split(":")
        port = free_port()
        env = {
            **os.environ,
            **common,
            **dict(item.split("=", 1) for item in overrides),
            "PYTHONPATH": os.pathsep.join(
                [str(Path(path).resolve())] + ([str(PROBE)] if args.allocators else [])
            ),
            "NATS_URL": url,
            "DUCKDB_PATH": str(root / f"{name}.duckdb"),
            "MATERIALIZER_HTTP_PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "pulse_bi", "materializer"]
        processes[name] = (Popen(command, env=env, cwd=path), port)
    started = time.monotonic()
    caught_up: dict[str, float] = {}
    try:
        while len(caught_up) < len(processes):
            time.sleep(1)
            for name, (process, port) in processes.items():
                if name not in caught_up and last_sequence(port) >= last:
                    caught_up[name] = time.monotonic()
                    elapsed = caught_up[name] - started
                    show(name, f"caught up ({elapsed:.0f} s)", figures(process.pid))
        time.sleep(args.settle)
        for name, (process, _) in processes.items():
            show(name, f"{args.settle:.0f} s later", figures(process.pid))
            if args.maps:
                top = mappings(process.pid, args.maps)
                print("          " + ", ".join(f"{name} {mb:.1f}" for mb, name in top))
            if args.allocators:
                print("          " + allocators(probe, process.pid), flush=True)
    finally:
        for process, _ in processes.values():
            process.terminate()
        for process, _ in processes.values():
            process.wait(timeout=120)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LocalNatsServer(store_dir=root / "nats").start()
        try:
            last = await prefill(server.url, args.events, seed=3)
            print(f"machine: {machine()}; stream: {last} events; load {os.getloadavg()}")
            await asyncio.to_thread(run, args, server.url, root, last)
            print(f"load at the end: {os.getloadavg()}")
        finally:
            server.stop()


def parse(argv: Any = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--code", action="append", required=True, help="name=path[:NAME=VALUE]")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every one")
    parser.add_argument("--maps", type=int, default=0, help="print the N largest mappings")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds before the 2nd look")
    parser.add_argument(
        "--allocators", action="store_true", help="pymalloc, glibc and jemalloc at the 2nd look"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
