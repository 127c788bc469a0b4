"""Start-up and CLI checks on the DuckDB file, and signals in every state of the process.

Files that cannot be used (SQLite, random bytes, truncated, newer schema, held by another
process) give one line and exit 2, for ``migrate status`` and for the materializer; no
extension is ever downloaded; SIGTERM and SIGINT end the materializer promptly even
while NATS cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from materializer import db
from pulse_bi.cli import main
from pulse_bi.natsserver import free_port


def sqlite_file(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    conn.close()
    return path


def random_file(path: Path) -> Path:
    path.write_bytes(os.urandom(40_000))
    return path


def truncated_file(path: Path) -> Path:
    whole = path.with_suffix(".whole")
    conn = duckdb.connect(str(whole))
    conn.execute("CREATE TABLE t AS SELECT range AS a, md5(range::VARCHAR) AS b FROM range(300000)")
    conn.close()
    db.upgrade(whole)
    shutil.copy(whole, path)
    os.truncate(path, whole.stat().st_size // 2)
    return path


def newer_file(path: Path) -> Path:
    latest = db.upgrade(path).latest
    conn = duckdb.connect(str(path))
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, 'future')", [latest + 1])
    conn.close()
    return path


BAD_FILES = {
    "sqlite": (sqlite_file, "is a SQLite database, not a DuckDB file"),
    "random": (random_file, "is not a DuckDB database file"),
    "truncated": (truncated_file, "is truncated or corrupt"),
    "newer": (newer_file, "newer than this pulse-bi knows"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_migrate_status_on_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, kind: str) -> None:
    make, words = BAD_FILES[kind]
    path = make(tmp_path / "pulse.duckdb")
    before = path.read_bytes()

    result = CliRunner().invoke(main, ["migrate", "status"], env={"DUCKDB_PATH": str(path)})

    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and words in line and str(path) in line
    assert "Traceback" not in result.output
    assert path.read_bytes() == before  # looking changed nothing


def run_materializer(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulse_bi", "materializer"],
        env={**os.environ, "MATERIALIZER_HTTP_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("kind", ["sqlite", "newer"])
def test_the_materializer_refuses_a_bad_file_with_one_line(tmp_path: Path, kind: str) -> None:
    make, words = BAD_FILES[kind]
    path = make(tmp_path / "pulse.duckdb")
    # NATS is never reached: the file is checked first.
    result = run_materializer({"DUCKDB_PATH": str(path), "NATS_URL": "nats://127.0.0.1:1"})
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    if kind == "newer":
        latest = db.available_migrations()[-1].version
        assert f"schema version {latest + 1}" in result.stderr
        assert f"(latest {latest})" in result.stderr


def test_connections_never_install_or_load_extensions(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "pulse.duckdb")
    try:
        settings = dict(
            conn.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('autoinstall_known_extensions', 'autoload_known_extensions')"
            ).fetchall()
        )
    finally:
        conn.close()
    assert settings == {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    }


def test_a_sqlite_file_does_not_make_duckdb_reach_for_an_extension(tmp_path: Path) -> None:
    """Even past our header check, DuckDB with our settings only says it is not there."""
    path = sqlite_file(tmp_path / "pulse.duckdb")
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    with pytest.raises(duckdb.Error) as raised:
        duckdb.connect(str(path), config=config)
    assert "http" not in str(raised.value).lower()
    with pytest.raises(db.DatabaseFileError, match="SQLite"):
        db.connect(path)


@pytest.fixture
def held_file(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A DuckDB file another process holds open; yields the path and that process's PID."""
    path = tmp_path / "pulse.duckdb"
    db.upgrade(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True);"
            " time.sleep(120)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield path, holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_migrate_status_on_a_held_file_names_the_process(held_file: tuple[Path, int]) -> None:
    path, pid = held_file
    result = CliRunner().invoke(main, ["migrate", "status"], env={"DUCKDB_PATH": str(path)})
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"is in use by process {pid} (" in line and "stop that process first" in line


def test_the_materializer_on_a_held_file_names_the_process(held_file: tuple[Path, int]) -> None:
    path, pid = held_file
    result = run_materializer({"DUCKDB_PATH": str(path), "NATS_URL": "nats://127.0.0.1:1"})
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"is in use by process {pid}" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_materializer_while_nats_is_unreachable(
    tmp_path: Path, sig: signal.Signals
) -> None:
    closed = free_port()  # nothing listens there
    process = subprocess.Popen(
        [sys.executable, "-m", "pulse_bi", "materializer"],
        env={
            **os.environ,
            "NATS_URL": f"nats://127.0.0.1:{closed}",
            "DUCKDB_PATH": str(tmp_path / "pulse.duckdb"),
            "MATERIALIZER_HTTP_PORT": "0",
            "LOG_LEVEL": "INFO",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until it is retrying the connection (the file is open by then).
        deadline = time.monotonic() + 30
        while not (tmp_path / "pulse.duckdb").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        assert process.poll() is None, "it should still be trying to connect"
        sent = time.monotonic()
        process.send_signal(sig)
        process.wait(timeout=20)  # generous; it takes well under a second
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert process.returncode == 0, stderr
    assert "stopped while starting (connecting to NATS" in stderr
    assert took < 20
