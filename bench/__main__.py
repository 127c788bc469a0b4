"""The benchmarks, one line each: ``python -m bench`` (``make bench``) lists them.

Run one with ``PYTHONPATH=. .venv/bin/python -m bench.<name> --help``; docs/BENCHMARKS.md
has each one's figures with the command, machine and load that gave them.
"""

from __future__ import annotations

import ast
from pathlib import Path


def summaries(folder: Path) -> list[tuple[str, str]]:
    """(module, first line of its docstring) of every benchmark module in ``folder``."""
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found.append((path.stem, doc.split("\n\n")[0].replace("\n", " ")))
    return found


def main() -> None:
    for name, summary in summaries(Path(__file__).parent):
        print(f"bench.{name}: {summary}")


if __name__ == "__main__":
    main()
