"""compose/docker-compose.cluster.yml: three NATS nodes in one JetStream cluster, two
materializers, two gateways behind one balancer; valid, complete and consistent."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from tests.compose.compose import (
    COMPOSE_DIR,
    compose_schema,
    env_example,
    interpolate,
    raw,
    size_bytes,
    variables,
)

NAME = "docker-compose.cluster.yml"
ENV = {**env_example(), "GRAFANA_ADMIN_PASSWORD": "a-chosen-password"}
PROJECT = interpolate(raw(NAME), ENV)
SERVICES: dict[str, dict[str, Any]] = PROJECT["services"]
NODES = ["nats-1", "nats-2", "nats-3"]
VALIDATOR = jsonschema.Draft7Validator(compose_schema())


def test_valid_before_and_after_interpolation() -> None:
    for document in (raw(NAME), PROJECT):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]
        assert not errors


def test_services() -> None:
    assert set(SERVICES) == {
        *NODES,
        "materializer-1",
        "materializer-2",
        "gateway-1",
        "gateway-2",
        "balancer",
    }


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_has_restart_policy_health_check_and_memory_limit(service: str) -> None:
    spec = SERVICES[service]
    assert spec["restart"] == "unless-stopped"
    health = spec["healthcheck"]
    assert health["test"][0] in ("CMD", "CMD-SHELL") and len(health["test"]) > 1
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in health
    assert size_bytes(spec["deploy"]["resources"]["limits"]["memory"]) > 0
    for dependency in spec.get("depends_on", {}):
        assert dependency in SERVICES


def test_volumes_declared_and_bind_mounts_exist() -> None:
    declared = set(PROJECT["volumes"])
    for service, spec in SERVICES.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{service}: {source}"
            else:
                assert source in declared, f"{service} mounts undeclared {source}"


def test_variables_are_those_of_env_example_with_the_same_defaults() -> None:
    example = env_example()
    for var, default in variables(NAME).items():
        assert var in example, f"{var} is not in compose/.env.example"
        if default is not None:
            assert example[var] == default, var


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_nodes_form_one_jetstream_cluster_each_with_its_own_store() -> None:
    stores = set()
    for node in NODES:
        command = SERVICES[node]["command"]
        assert "-js" in command
        assert _option(command, "-n") == node
        assert _option(command, "--cluster_name") == "pulse-bi"
        assert _option(command, "--cluster") == "nats://0.0.0.0:6222"
        routes = set(_option(command, "--routes").split(","))
        assert routes == {f"nats://{other}:6222" for other in NODES if other != node}
        store = _option(command, "-sd")
        (volume,) = [v.split(":")[0] for v in SERVICES[node]["volumes"] if v.endswith(store)]
        stores.add(volume)
    assert len(stores) == 3


def test_python_services_know_every_node_and_the_stream_has_three_replicas() -> None:
    every = {f"nats://{node}:4222" for node in NODES}
    for service in ("materializer-1", "materializer-2", "gateway-1", "gateway-2"):
        url = SERVICES[service]["environment"]["NATS_URL"]
        assert set(url.split(",")) == every, service
    for service in ("materializer-1", "materializer-2"):
        environment = SERVICES[service]["environment"]
        assert environment["STREAM_REPLICAS"] == "3"
        assert int(environment["READ_MAX_LAG"]) > 0
    files = {SERVICES[m]["volumes"][0].split(":")[0] for m in ("materializer-1", "materializer-2")}
    assert len(files) == 2  # each replica its own DuckDB file


def test_balancer_spreads_over_both_gateways_and_passes_websockets() -> None:
    conf = (COMPOSE_DIR / "nginx-gateways.conf").read_text()
    servers = re.findall(r"^\s*server (gateway-\d):(\d+)", conf, re.MULTILINE)
    assert servers == [("gateway-1", "8004"), ("gateway-2", "8004")]
    for gateway in ("gateway-1", "gateway-2"):
        assert SERVICES[gateway]["environment"]["GATEWAY_PORT"] == "8004"
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "listen 8004;" in conf
    assert SERVICES["balancer"]["ports"] == [f"{ENV.get('GATEWAY_PORT') or '8004'}:8004"]
