"""The writer's instructions per event, by library: a load-independent measure of its work.

Run: ``.venv/bin/python -m bench.bench_instructions [--code name=path ...] [--events 20000]
[--functions N]``
(needs ``valgrind``; about five minutes per code tree at the default size).

Timings on a shared machine swing by ±20 % within minutes (docs/BENCHMARKS.md), which
hides the few per cent one change to the writer makes. Instructions do not swing: each
code tree given with ``--code`` (default: this checkout) runs the same script twice under
``valgrind --tool=callgrind``, in a child Python with that tree on its path. Both runs
build the simulator's stream (``generate(7, …)``), open an empty store and apply a first
batch of ``--events`` to it (DuckDB's first statements plan and allocate what later
batches reuse); one then applies a second batch of ``--events``. The difference between
the two runs is that batch's work, DuckDB's included (``DUCKDB_THREADS=1``, as the
materializer runs). It is printed per event, in all and by shared object (the
interpreter, DuckDB, numpy, msgspec, the C library …), with the ``--top`` functions that
changed most between the first two trees when there are two.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_gateway import bounded

#: Per event: instructions by shared object, and by (shared object, function).
Costs = tuple[dict[str, int], dict[tuple[str, str], int]]

_NAMED = re.compile(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$")


def child(events: int, work: bool) -> None:
    """What runs under valgrind: one warm-up batch, then (``work``) the measured one."""
    from datetime import UTC, datetime

    from materializer.db import MEMORY_LIMIT
    from materializer.store import RawMessage, Store
    from pulse_bi.simulator import generate

    received = datetime.now(UTC)
    messages = [
        RawMessage(sequence, m.subject, m.data, received)
        for sequence, m in enumerate(generate(7, 2 * events).messages, start=1)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.duckdb", memory_limit=MEMORY_LIMIT, threads=1)
        store.apply_batch(messages[:events])
        if work:
            store.apply_batch(messages[events:])
        store.close()


def parse(path: Path) -> Costs:
    """Self cost by object and by (object, function) of a callgrind output file.

    Callgrind names each object and function once, ``ob=(3) /lib/libc.so.6``, and by
    its number alone afterwards, in ``ob=``/``cob=`` and ``fn=``/``cfn=`` lines alike.
    A cost line right after a ``calls=`` line is the call's inclusive cost: skipped.
    """
    names: dict[tuple[str, str], str] = {}
    by_object: dict[str, int] = collections.Counter()
    by_function: dict[tuple[str, str], int] = collections.Counter()
    obj = function = ""
    after_call = False
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            named = _NAMED.match(line.rstrip("\n"))
            if named is not None:
                called, kind, number, name = named.groups()
                if name:
                    names[kind, number] = name
                if not called:
                    if kind == "ob":
                        obj = names.get((kind, number), number).rsplit("/", 1)[-1]
                    else:
                        function = names.get((kind, number), number)
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    cost = int(fields[1])
                    by_object[obj] += cost
                    by_function[obj, function] += cost
    return dict(by_object), dict(by_function)


def measure(tree: Path, events: int) -> Costs:
    """Instructions per event of the second batch applied with the code in ``tree``."""
    # One string hash seed for every run: with a random one, the interpreter's dict
    # lookups (``unicodekeys_lookup_unicode``) swung by ~40,000 instructions per event of a
    # 100-event batch between two runs of the same code.
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for work in (False, True):
            out = Path(tmp) / f"callgrind.{work}"
            command = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                # This file, so that a tree without it can be measured too.
                str(Path(__file__).resolve()),
                "--child",
                "--events",
                str(events),
            ]
            subprocess.run(
                [*command, "--work"] if work else command,
                cwd=tree,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            runs.append(parse(out))
    (objects_before, functions_before), (objects, functions) = runs
    per_object = {k: (v - objects_before.get(k, 0)) / events for k, v in objects.items()}
    per_function = {k: (v - functions_before.get(k, 0)) / events for k, v in functions.items()}
    return (
        {k: round(v) for k, v in per_object.items()},
        {k: round(v) for k, v in per_function.items()},
    )


def report(results: dict[str, Costs], top: int, functions: int = 0) -> None:
    """Per event: the total and each shared object of note, a column per tree; with two
    trees, the ``top`` functions that changed most; for each tree, its ``functions``
    costliest functions (self cost) with their share of its total."""
    names = list(results)
    totals = {name: sum(results[name][0].values()) for name in names}
    print(f"instructions per event of a batch ({', '.join(names)}):")
    print("  total: " + ", ".join(f"{totals[n]:,}" for n in names))
    first = results[names[0]][0]
    objects = sorted(first, key=lambda k: -abs(first[k]))
    for obj in objects:
        if abs(first[obj]) < 0.01 * totals[names[0]]:
            break
        print(f"  {obj}: " + ", ".join(f"{results[n][0].get(obj, 0):,}" for n in names))
    if len(names) >= 2 and top:
        before, after = results[names[0]][1], results[names[1]][1]
        change = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
        print(f"  functions that changed most, {names[1]} against {names[0]}:")
        for key in sorted(change, key=lambda k: -abs(change[k]))[:top]:
            print(f"    {change[key]:+,} {key[0]}: {key[1][:100]}")
    for name in names if functions else ():
        costs = results[name][1]
        print(f"  costliest functions of {name}:")
        for key in sorted(costs, key=lambda k: -costs[k])[:functions]:
            share = 100 * costs[key] / totals[name] if totals[name] else 0.0
            print(f"    {costs[key]:,} ({share:.1f} %) {key[0]}: {key[1][:100]}")


def main(args: argparse.Namespace) -> dict[str, Costs]:
    """Measure each tree and print the comparison; return the figures by tree name."""
    results = {name: measure(tree, args.events) for name, tree in args.code}
    report(results, args.top, args.functions)
    return results


def code(value: str) -> tuple[str, Path]:
    """``name=path`` of a checkout: its code is measured."""
    name, sep, path = value.partition("=")
    tree = Path(path).resolve()
    if not sep or not name or not (tree / "materializer" / "store.py").is_file():
        raise argparse.ArgumentTypeError(f"expected name=path of a checkout, got {value!r}")
    return name, tree


def arguments() -> argparse.ArgumentParser:
    """The command line: sizes within bounds and checkouts that exist, or a clear error."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--code", type=code, action="append", default=None)
    parser.add_argument("--events", type=bounded(int, 1, 1_000_000), default=20_000)
    parser.add_argument("--top", type=bounded(int, 0, 1000), default=12)
    parser.add_argument(
        "--functions",
        type=bounded(int, 0, 1000),
        default=0,
        help="also print each tree's costliest functions (self cost per event)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", action="store_true", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    parsed = arguments().parse_args()
    if parsed.child:
        child(parsed.events, parsed.work)
    else:
        if parsed.code is None:
            parsed.code = [code("this=.")]
        main(parsed)
