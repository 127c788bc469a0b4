"""The data lifecycle as operators see it: GraphQL ``pipeline``, /stats and /metrics of a
real materializer show the last backup, the archive horizon, the file size and free disk."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from gateway.settings import Settings
from pulse_bi.natsserver import free_port
from tests.conftest import cloud_event, publish_events

pytestmark = pytest.mark.slow

QUERY = {
    "query": "{ pipeline { lastSequence lastBackupAt lastBackupSequence archiveHorizon"
    " fileBytes diskFreeBytes } }"
}


def order(number: int) -> dict[str, Any]:
    return cloud_event(
        "order.created",
        {
            "order_id": f"O-{number}",
            "customer_id": "C-1",
            "channel": "web",
            "total_amount": "5.00",
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "5.00"}],
        },
    )


async def test_pipeline_stats_and_metrics_show_backup_archive_file_and_disk(
    materializer_settings: Any,
    settings: Settings,
    server_factory: Any,
    js: JetStreamContext,
    tmp_path: Any,
) -> None:
    from materializer.app import Materializer

    last = await publish_events(js, *(order(i) for i in range(5)))
    port = free_port()
    lifecycle_settings = replace(
        materializer_settings,
        http_port=port,
        backup_path=tmp_path / "backups",
        archive_path=tmp_path / "archive",
        archive_after_days=1.0,
    )
    server = server_factory(settings)
    async with (
        Materializer(lifecycle_settings) as running,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        await running.wait_for_sequence(last)
        before = (await http.post("/graphql", json=QUERY)).json()["data"]["pipeline"]
        assert running.lifecycle is not None
        taken = await running.lifecycle.take_backup(lifecycle_settings.backup_path)
        await running.lifecycle.archive_once(datetime.now(UTC) + timedelta(days=2))
        after = (await http.post("/graphql", json=QUERY)).json()["data"]["pipeline"]
        stats = (await http.get(f"http://127.0.0.1:{port}/stats")).json()
        metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text

    assert before["lastBackupAt"] is None and before["lastBackupSequence"] is None
    assert before["archiveHorizon"] == 0
    assert before["fileBytes"] > 0 and before["diskFreeBytes"] > 0
    assert after["lastBackupSequence"] == taken.manifest.last_sequence == last
    assert after["lastBackupAt"].startswith(taken.manifest.created_at[:16])
    assert after["archiveHorizon"] == last
    assert stats["last_backup_sequence"] == last and stats["archive_horizon"] == last
    assert stats["file_bytes"] > 0 and stats["disk_free_bytes"] > 0
    assert stats["archive_bytes"] > 0
    assert f"pulse_materializer_archive_horizon {float(last)}" in metrics
    assert f"pulse_materializer_last_backup_sequence {float(last)}" in metrics
    assert "pulse_materializer_file_bytes " in metrics
