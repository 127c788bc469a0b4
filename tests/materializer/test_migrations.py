"""Schema migrations: status of a file, upgrade, and Store.open applying what is pending."""

from __future__ import annotations

from pathlib import Path

import duckdb

from materializer import db
from materializer.store import Store


def test_missing_file_is_at_version_zero_with_everything_pending(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    status = db.migration_status(path)
    assert status.current == 0
    assert status.latest >= 1
    assert status.pending == [f"{m.version:04d}_{m.name}" for m in db.available_migrations()]
    assert status.pending[0] == "0001_initial"
    assert not path.exists()


def test_upgrade_brings_a_file_to_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    status = db.upgrade(path)
    assert status.current == status.latest
    assert status.pending == []
    assert db.migration_status(path) == status
    # Upgrading again changes nothing.
    assert db.upgrade(path) == status


def test_migrations_are_numbered_consecutively_from_one() -> None:
    versions = [m.version for m in db.available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_store_open_applies_pending_migrations_and_records_them(tmp_path: Path) -> None:
    path = tmp_path / "pulse.duckdb"
    store = Store.open(path)
    store.close()
    conn = duckdb.connect(str(path))
    try:
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
        tables = {
            row[0]
            for row in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    finally:
        conn.close()
    assert rows[0] == (1, "initial")
    assert {
        "pipeline_state",
        "rejected_events",
        "order_events",
        "order_lines",
        "sales_by_hour",
        "product_sales_by_hour",
        "stock_events",
        "stock_snapshot",
        "product_events",
        "products",
        "customer_events",
        "customers",
        "invoice_events",
        "invoices",
        "payment_events",
    } <= tables
    assert db.migration_status(path).pending == []


def test_status_of_an_open_connection(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "pulse.duckdb")
    try:
        assert db.status(conn).current == 0
        upgraded = db.apply_migrations(conn)
        assert upgraded.current == upgraded.latest
        assert db.status(conn) == upgraded
    finally:
        conn.close()
