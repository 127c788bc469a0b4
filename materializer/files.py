"""Small file-system and DuckDB helpers shared by backups and the archive: durable
writes, paths inside SQL literals, and connections that download nothing."""

from __future__ import annotations

import os
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finish(partial: Path, final: Path) -> int:
    """fsync a written file and give it its final name; return its size."""
    fsync(partial)
    partial.rename(final)
    return final.stat().st_size


def sql_literal(path: Path) -> str:
    """``path`` as the inside of a SQL string literal (quotes doubled)."""
    return str(path).replace("'", "''")


def duckdb_config() -> dict[str, str | bool | int | float | list[str]]:
    """As ``materializer.db.connect``: DuckDB installs and loads no extension by itself,
    so nothing is downloaded at run time."""
    return {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
