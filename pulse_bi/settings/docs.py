"""The settings tables of the docs, generated from the declarations.

``python -m pulse_bi.settings`` prints them; ``--write`` rewrites them in docs/GATEWAY.md
and docs/OPERATIONS.md (tests/test_settings.py fails while a table differs).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

from pulse_bi.settings import settings_of


def markdown_table(cls: type) -> str:
    """The settings table of the docs: variable, default, meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for declared in settings_of(cls).values():
        default = declared.documented_default
        shown = f"`{default}`" if default != "(none)" else default
        lines.append(f"| `{declared.env}` | {shown} | {declared.doc} |")
    return "\n".join(lines) + "\n"


#: Where each settings table lives: (doc, the line just above the table, dataclass path).
TABLES = (
    ("docs/GATEWAY.md", "## Settings", "gateway.settings:Settings"),
    ("docs/OPERATIONS.md", "## Materializer settings", "materializer.settings:Settings"),
)


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return cast(type, getattr(importlib.import_module(module), name))


def table_in(text: str, heading: str) -> tuple[int, int]:
    """Start and end offsets of the first table after ``heading`` in a document."""
    start = text.index("\n| variable |", text.index(heading + "\n")) + 1
    end = text.find("\n\n", start)
    return start, len(text) if end < 0 else end + 1


def render_docs(root: Path) -> dict[Path, str]:
    """Each doc's text with its settings table generated from the declarations."""
    out: dict[Path, str] = {}
    for doc, heading, cls_path in TABLES:
        path = root / doc
        text = out.get(path) or path.read_text(encoding="utf-8")
        start, end = table_in(text, heading)
        out[path] = text[:start] + markdown_table(_load(cls_path)) + text[end:]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pulse_bi.settings [--write]``: print or rewrite the docs' tables."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parents[2]
    for path, text in render_docs(root).items():
        if "--write" in args:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(root)}")
    if "--write" not in args:
        for _, _, cls_path in TABLES:
            print(cls_path)
            print(markdown_table(_load(cls_path)))
    return 0
