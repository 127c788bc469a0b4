"""What a module costs the materializer's RSS: a store that applied a few batches, in a
fresh process, with and without the module imported.

Run: ``.venv/bin/python -m bench.bench_imports [--module pyarrow.compute] [--runs 2]``.
Each run starts two processes in turn: one opens a store on a new file and applies
``--events`` simulated events in 500-event batches (``bench_apply.generate``), the other
does the same after importing ``--module``; each prints its RSS (``VmRSS``) at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

_SCRIPT = """
import re, sys
if sys.argv[3]:
    __import__(sys.argv[3])
from bench.bench_apply import generate
from materializer.store import Store
store = Store.open(sys.argv[1])
messages = list(generate(int(sys.argv[2])))
for start in range(0, len(messages), 500):
    store.apply_batch(messages[start : start + 500])
status = open("/proc/self/status").read()
print(int(re.search(r"VmRSS:\\s+(\\d+)", status)[1]) // 1024)
"""


def rss_mb(events: int, module: str) -> int:
    """RSS (MB) of a fresh process that applied ``events``, ``module`` imported first."""
    root = Path(__file__).parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(Path(tmp) / "m.duckdb"), str(events), module],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    return int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--module", default="pyarrow.compute")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    for run in range(args.runs):
        without, with_ = rss_mb(args.events, ""), rss_mb(args.events, args.module)
        print(f"run {run + 1}: RSS {without} MB without {args.module}, {with_} MB with it")


if __name__ == "__main__":
    main()
