"""`pulse-bi gateway`: the health probe and settings errors."""

from __future__ import annotations

import asyncio
from typing import Any

from click.testing import CliRunner

from gateway.cli import gateway_command
from gateway.settings import Settings
from pulse_bi.natsserver import free_port
from tests.gateway.conftest import Canned


def probe(port: int, env: dict[str, str] | None = None) -> Any:
    args = ["serve", "--check", "--host", "127.0.0.1", "--port", str(port)]
    return CliRunner().invoke(gateway_command, args, env=env)


async def test_check_exits_0_when_the_gateway_is_healthy(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings)
    result = await asyncio.to_thread(probe, server.settings.port)
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output


async def test_check_exits_1_with_the_reason_when_the_materializer_is_down(
    settings: Settings, server_factory: Any
) -> None:
    server = server_factory(settings)
    result = await asyncio.to_thread(probe, server.settings.port)
    assert result.exit_code == 1
    assert "materializer is not running" in result.output


def test_check_exits_1_when_nothing_listens() -> None:
    result = probe(free_port())
    assert result.exit_code == 1
    assert "not reachable" in result.output


def test_bad_setting_is_a_usage_error_naming_the_variable() -> None:
    result = probe(8004, env={"GATEWAY_MAX_DEPTH": "deep"})
    assert result.exit_code == 2
    assert "GATEWAY_MAX_DEPTH='deep': expected a whole number 1 or more" in result.output
