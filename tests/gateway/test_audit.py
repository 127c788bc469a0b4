"""The graphql-http npm package's `auditServer` against a real uvicorn gateway."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import Settings
from tests.gateway.conftest import Canned

AUDIT = Path(__file__).parent / "audit"


async def run_node_script(script: str, package: str, url: str) -> tuple[int | None, str, str]:
    """Run `audit/<script>` on Node against `url`: its exit status, stdout and stderr.

    Skips when Node.js is missing; fails when `npm ci` has not installed `package`.
    """
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"node is not installed: {package} needs Node.js 20+")
    if not (AUDIT / "node_modules" / package).exists():
        pytest.fail("run `npm ci --prefix tests/gateway/audit` first (make test does)")
    process = await asyncio.create_subprocess_exec(
        node,
        str(AUDIT / script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.slow
async def test_graphql_http_audit_passes_every_must_and_should(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    server = server_factory(settings)
    returncode, stdout, stderr = await run_node_script(
        "audit.mjs", "graphql-http", server.url + "/graphql"
    )
    results = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert results, stderr
    failures = [r for r in results if r["status"] != "ok"]
    assert not failures, json.dumps(failures, indent=1)
    assert len(results) >= 50
    assert returncode == 0
