"""The demo history `pulse-bi dev` seeds shows every panel and README example something."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pulse_bi.simulator.catalog import WAREHOUSES
from pulse_bi.simulator.expected import expected_aggregates
from pulse_bi.simulator.generator import generate

BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "over_90")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_history_has_low_stock_and_every_aging_bucket(seed: int) -> None:
    end = datetime(2026, 11, 30, 12, tzinfo=UTC)
    scenario = generate(seed, 4000, start=end.replace(day=29), end=end)
    expected = expected_aggregates(scenario.messages, as_of=end.date())
    low = expected["low_stock"]
    assert len(low) >= 1
    assert all(row["on_hand"] <= row["reorder_point"] for row in low)
    buckets = expected["ar_aging"]
    for bucket in BUCKETS:
        assert Decimal(buckets[bucket]) > 0, bucket


def test_warehouses_are_the_ones_the_docs_name() -> None:
    from pathlib import Path

    docs = Path(__file__).parents[2]
    text = (docs / "README.md").read_text() + (docs / "docs" / "KIOSK.md").read_text()
    assert "WH-2" not in text and "WH-1" not in text
    for warehouse in WAREHOUSES:
        assert warehouse in (docs / "docs" / "SIMULATOR.md").read_text()
    assert "warehouse=WH-NORTH" in text
