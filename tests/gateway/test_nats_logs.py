"""What the gateway says about NATS: at once when it cannot reach it, the URL when it
connects, and nothing alarming when it is stopped on purpose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pulse_bi.natsserver import LocalNatsServer, free_port

pytestmark = pytest.mark.slow


def gateway(nats_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_HOST": "127.0.0.1",
    }
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "pulse_bi", "gateway"], env=env, stdout=out, stderr=out
    )


def wait_for(log: Path, text: str, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged in {seconds} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def test_an_unreachable_nats_is_logged_at_once_with_its_url(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    log = tmp_path / "gateway.log"
    process = gateway(url, log)
    try:
        # Well before the 30 s the issue saw, and before uvicorn even says it is up.
        wait_for(log, f"cannot reach NATS at {url}", seconds=15)
    finally:
        stop(process)


def test_connect_logs_the_url_and_a_clean_stop_logs_no_reconnect(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    process = gateway(nats_server.url, log)
    try:
        wait_for(log, f"connected to NATS at {nats_server.url}")
        wait_for(log, "Application startup complete")
    finally:
        stop(process)
    content = log.read_text()
    assert "ParseResult" not in content
    assert "reconnecting" not in content
    assert "disconnected" not in content
