"""A replay of a long stream says how far it is, instead of nothing until it is done."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from materializer import app
from materializer.app import Materializer
from materializer.settings import Settings
from tests.conftest import cloud_event


async def test_catching_up_logs_sequence_lag_and_rate(
    materializer_settings: Settings,
    js: JetStreamContext,
    nc: NATS,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = 1500
    for i in range(count):  # core publishes into the stream: fast, stored all the same
        event = cloud_event(
            "stock.moved",
            {"sku": f"S-{i % 50}", "warehouse": "WH-NORTH", "quantity_delta": 1},
            time="2026-11-25T10:00:00Z",
        )
        await nc.publish("pulse.events.stock.moved", json.dumps(event).encode())
    await nc.flush()
    monkeypatch.setattr(app, "PROGRESS_INTERVAL", 0.02)
    monkeypatch.setattr(app, "PROGRESS_MIN_LAG", 1)
    # Small batches make the replay last long enough for a few progress lines.
    settings = dataclasses.replace(materializer_settings, batch_max_events=20)
    caplog.set_level(logging.INFO, logger="pulse_bi.materializer")
    async with Materializer(settings) as running:
        await running.wait_for_sequence(count, timeout=60)
    lines = [r.getMessage() for r in caplog.records if "catching up" in r.getMessage()]
    assert lines, "no progress logged during the replay"
    assert f"of {count}, lag " in lines[0]
    assert lines[0].endswith(" events/s")
