"""The graphql-http npm package's `auditServer` against a real uvicorn gateway."""

from __future__ import annotations

import json

import pytest

from tests.gateway.conftest import NodeScript


@pytest.mark.slow
async def test_graphql_http_audit_passes_every_must_and_should(node_script: NodeScript) -> None:
    returncode, stdout, stderr = await node_script("audit.mjs", "graphql-http")
    results = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert results, stderr
    failures = [r for r in results if r["status"] != "ok"]
    assert not failures, json.dumps(failures, indent=1)
    assert len(results) >= 50
    assert returncode == 0
