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


@pytest.mark.slow
async def test_graphql_http_audit_passes_every_must_and_should(
    settings: Settings, canned: Canned, server_factory: Any
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the graphql-http audit needs Node.js 20+")
    if not (AUDIT / "node_modules" / "graphql-http").exists():
        pytest.fail("run `npm ci --prefix tests/gateway/audit` first (make test does)")
    server = server_factory(settings)
    process = await asyncio.create_subprocess_exec(
        node,
        str(AUDIT / "audit.mjs"),
        server.url + "/graphql",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    results = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert results, stderr.decode()
    failures = [r for r in results if r["status"] != "ok"]
    assert not failures, json.dumps(failures, indent=1)
    assert len(results) >= 50
    assert process.returncode == 0
