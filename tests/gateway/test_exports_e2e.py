"""Exports end to end: a simulated stream through the real materializer, read back per format.

Each export, read back with csv / pyarrow / openpyxl, must equal the simulator's expected
aggregates (pulse_bi/simulator/expected.py, written independently of the SQL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from gateway.exports.table import table
from gateway.settings import Settings
from pulse_bi.contract import BY_NAME
from pulse_bi.natsserver import LocalNatsServer
from pulse_bi.simulator import generate
from pulse_bi.simulator.events import stored_by_stream
from tests.gateway.conftest import Server
from tests.gateway.test_exports import FORMATS, read_back
from tests.materializer.eventkit import publish

pytestmark = pytest.mark.slow

END = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
AS_OF = dt.date(2026, 11, 25)
ALL_TIME = "from=2000-01-02T00:00:00Z&to=2100-01-01T00:00:00Z"
#: Query -> (URL parameters, key of the expected aggregates).
CASES = {
    "sales_by_hour": ALL_TIME,
    "sales_by_channel": ALL_TIME,
    "top_products": ALL_TIME + "&limit=10",
    "stock_levels": "",
    "low_stock": "",
    "ar_aging": f"as_of={AS_OF}",
    "overdue_invoices": f"as_of={AS_OF}",
}


def wire(kind: str, value: Any) -> Any:
    """A read-back cell as the JSON wire shows it (money and times as strings)."""
    if value is None or value == "":
        return None
    if kind == "money":
        if isinstance(value, float | int):  # an XLSX number cell (0.00 reads back as 0)
            return f"{value:.2f}"
        return str(Decimal(value))
    if kind == "time":
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).isoformat()
        return value
    if kind == "date":
        return value.isoformat() if isinstance(value, dt.date) else value
    if kind == "int":
        return int(value)
    if kind == "bool":
        return value if isinstance(value, bool) else value == "true"
    return value


def expected_rows(name: str, expected: Any) -> list[list[Any]]:
    """The expected aggregate flattened like the export (wire names, nested lists joined)."""
    t = table(BY_NAME[name])
    data = expected if isinstance(expected, list) else [expected]
    rows = []
    for item in data:
        own = [item.get(c.name) for c in t.columns if "." not in c.name]
        nested = [c.name.split(".", 1) for c in t.columns if "." in c.name]
        if not nested:
            rows.append(own)
            continue
        for sub in item[nested[0][0]] or [{}]:
            rows.append(own + [sub.get(field) for _, field in nested])
    return rows


@pytest.fixture
async def loaded(materializer: Any, js: JetStreamContext) -> dict[str, Any]:
    scenario = generate(7, 2500, duplicates=0.02, bad=0.02, end=END)
    sequence = await publish(js, stored_by_stream(scenario.messages))
    await materializer.wait_for_sequence(sequence)
    return scenario.expected(AS_OF)


async def test_every_format_equals_the_expected_aggregates(
    loaded: dict[str, Any], settings: Settings, server_factory: Any
) -> None:
    server: Server = server_factory(settings)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for name, query in CASES.items():
            columns = table(BY_NAME[name]).columns
            want = expected_rows(name, loaded[name])
            assert want, name
            for fmt in FORMATS:
                response = await http.get(f"/export/{name}.{fmt}?{query}")
                assert response.status_code == 200, (name, fmt, response.text)
                header, *rows = read_back(fmt, response.content)
                assert header == [c.header for c in columns]
                got = [[wire(c.kind, v) for c, v in zip(columns, row, strict=True)] for row in rows]
                assert got == want, (name, fmt)
        # Queries the simulator has no expectation for: counts agree with its counts.
        counts = loaded["counts"]
        for fmt in FORMATS:
            rejected = read_back(fmt, (await http.get(f"/export/rejected_events.{fmt}")).content)
            assert len(rejected) - 1 == counts["rejected"] > 0
            pipeline = read_back(fmt, (await http.get(f"/export/pipeline.{fmt}")).content)
            applied = pipeline[0].index("Events applied")
            assert int(pipeline[1][applied]) == counts["applied"]


async def test_cli_writes_the_same_file_as_the_endpoint(
    loaded: dict[str, Any],
    settings: Settings,
    server_factory: Any,
    nats_server: LocalNatsServer,
    tmp_path: Path,
) -> None:
    out = tmp_path / "levels.parquet"
    command = [
        sys.executable, "-m", "pulse_bi", "export", "stock_levels", "--format", "parquet",
        "--out", str(out), "--nats-url", nats_server.url,
    ]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{len(loaded['stock_levels'])} rows -> {out}" in done.stderr
    columns = table(BY_NAME["stock_levels"]).columns
    _header, *rows = read_back("parquet", out.read_bytes())
    got = [[wire(c.kind, v) for c, v in zip(columns, row, strict=True)] for row in rows]
    assert got == expected_rows("stock_levels", loaded["stock_levels"])
    bad = await asyncio.to_thread(
        subprocess.run,
        [*command[:7], "-p", "warehouse=", "--nats-url", nats_server.url],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "is empty" in bad.stderr
    down = await asyncio.to_thread(
        subprocess.run,
        [*command[:9], "--nats-url", "nats://127.0.0.1:1", "--timeout", "0.2"],
        capture_output=True,
        text=True,
    )
    assert down.returncode == 1 and "export failed" in down.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
