"""``pulse-bi dev`` (what ``make up`` runs) brings the whole system up and down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pulse_bi.natsserver import free_port

pytestmark = pytest.mark.slow


def test_dev_runs_nats_materializer_gateway_and_simulator_then_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port, nats_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "pulse_bi", "dev",
            "--data-path", str(tmp_path / "data"),
            "--port", str(port),
            "--nats-port", str(nats_port),
            "--seed-events", "500",
            "--rate", "50",
        ],
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        first = second = None
        while time.monotonic() < deadline:
            assert process.poll() is None, "pulse-bi dev exited early"
            try:
                response = httpx.post(
                    f"{url}/graphql",
                    json={"query": "{ pipeline { lastSequence eventsApplied } }"},
                    timeout=5,
                )
                applied = response.json()["data"]["pipeline"]["eventsApplied"]
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                applied = None
            if applied and applied >= 450:
                if first is None:
                    first = applied
                elif applied > first:  # the simulator keeps feeding events
                    second = applied
                    break
            time.sleep(0.5)
        assert first is not None and second is not None, "no simulated events arrived"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert (tmp_path / "data" / "pulse_bi.duckdb").exists()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0
