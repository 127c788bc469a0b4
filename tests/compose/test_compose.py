"""The compose files are valid Compose projects alone and together, and fit a Pi 5."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tests.compose.compose import (
    COMPOSE_DIR,
    FILES,
    ROOT,
    InterpolationError,
    compose_schema,
    env_example,
    interpolate,
    merge,
    raw,
    size_bytes,
    variables,
)

#: What `docker compose` sees with compose/.env copied from .env.example and a password.
ENV = {**env_example(), "GRAFANA_ADMIN_PASSWORD": "a-chosen-password"}
#: A Raspberry Pi 5 has 4 GiB; leave at least 1 GiB to the OS and the page cache.
PI5_BUDGET = 3 * 2**30

VALIDATOR = jsonschema.Draft7Validator(compose_schema())


def project(*names: str) -> dict[str, Any]:
    """The merged, interpolated project of some compose files."""
    return interpolate(merge([raw(name) for name in names]), ENV)


ALL = project(*FILES)
SERVICES: dict[str, dict[str, Any]] = ALL["services"]


def _errors(document: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]


def test_vendored_schema_is_the_compose_specification_and_rejects_nonsense() -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    assert _errors({"services": {"x": {"image": "a", "restart_policy": "always"}}})
    assert _errors({"services": {"x": {"image": "a", "healthcheck": {"test": 1}}}})


@pytest.mark.parametrize("name", FILES)
def test_each_file_is_valid_alone_before_and_after_interpolation(name: str) -> None:
    assert not _errors(raw(name))
    assert not _errors(project(name))


@pytest.mark.parametrize(
    "names", [FILES[:2], FILES, (FILES[0], FILES[2])], ids=["base+bi", "base+bi+demo", "base+demo"]
)
def test_files_merge_into_a_valid_project(names: tuple[str, ...]) -> None:
    assert not _errors(project(*names))


def test_files_define_disjoint_services_under_one_project_name() -> None:
    seen: dict[str, str] = {}
    for name in FILES:
        assert raw(name)["name"] == "pulse-bi"
        for service in raw(name)["services"]:
            assert service not in seen, f"{service} in {seen.get(service)} and {name}"
            seen[service] = name
    assert set(seen) == {"nats", "materializer", "gateway", "grafana", "simulator"}


@pytest.mark.parametrize("name", FILES)
def test_each_file_depends_only_on_its_own_services_so_it_runs_alone(name: str) -> None:
    services = raw(name)["services"]
    for service, spec in services.items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in services, f"{service} depends on {dependency} of another file"


@pytest.mark.parametrize("name", FILES)
def test_each_file_declares_the_named_volumes_it_mounts(name: str) -> None:
    document = project(name)
    declared = set(document.get("volumes") or {})
    for service, spec in document["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{service} mounts undeclared volume {source}"
            else:
                assert (COMPOSE_DIR / source).exists(), f"{service}: {source} does not exist"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_has_restart_policy_health_check_and_memory_limit(service: str) -> None:
    spec = SERVICES[service]
    assert spec["restart"] in ("unless-stopped", "always", "on-failure")
    health = spec["healthcheck"]
    assert not health.get("disable")
    assert health["test"][0] in ("CMD", "CMD-SHELL") and len(health["test"]) > 1
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in health
    assert size_bytes(spec["deploy"]["resources"]["limits"]["memory"]) > 0


def test_memory_limits_together_fit_a_raspberry_pi_5() -> None:
    total = sum(
        size_bytes(spec["deploy"]["resources"]["limits"]["memory"]) for spec in SERVICES.values()
    )
    assert total <= PI5_BUDGET, f"{total / 2**30:.2f} GiB of limits on a 4 GiB Pi 5"


def test_runtime_memory_targets_stay_inside_their_container_limits() -> None:
    def limit(service: str) -> int:
        return size_bytes(SERVICES[service]["deploy"]["resources"]["limits"]["memory"])

    materializer = SERVICES["materializer"]["environment"]
    assert size_bytes(materializer["DUCKDB_MEMORY_LIMIT"]) <= limit("materializer") // 2
    assert size_bytes(SERVICES["nats"]["environment"]["GOMEMLIMIT"]) < limit("nats")


def test_nats_runs_jetstream_with_its_store_on_a_volume() -> None:
    nats = SERVICES["nats"]
    command = nats["command"]
    assert "-js" in command
    store = command[command.index("-sd") + 1]
    assert f"nats-data:{store}" in nats["volumes"]
    assert "nats-data" in ALL["volumes"]


def test_python_services_share_one_image_built_from_the_dockerfile() -> None:
    python = {name: SERVICES[name] for name in ("materializer", "gateway", "simulator")}
    assert len({spec["image"] for spec in python.values()}) == 1
    for spec in python.values():
        build = spec["build"]
        assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
        assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()
        assert spec["init"] is True, "PID 1 must forward SIGTERM for a draining shutdown"


def test_python_services_reach_nats_at_the_base_files_service_by_default() -> None:
    port = ALL["services"]["nats"]["ports"][0].split(":")[-1]
    for name in ("materializer", "gateway", "simulator"):
        assert SERVICES[name]["environment"]["NATS_URL"] == f"nats://nats:{port}"


def test_materializer_keeps_duckdb_in_the_data_path_volume() -> None:
    materializer = SERVICES["materializer"]
    environment = materializer["environment"]
    assert environment["DATA_PATH"] == "/data"
    assert environment["DUCKDB_PATH"] == "", "empty: the file follows DATA_PATH"
    assert materializer["stop_grace_period"], "draining needs time to commit the batch"


def test_data_volume_is_mounted_where_the_image_gives_it_to_the_service_user() -> None:
    # A volume mounted at a path the image lacks is created owned by root, which the
    # unprivileged materializer cannot write: so the mount point never follows DATA_PATH.
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert "chown pulse:pulse /data" in dockerfile
    assert 'VOLUME ["/data"]' in dockerfile
    moved = interpolate(raw(FILES[1]), {**ENV, "DATA_PATH": "/data/pulse-bi"})
    assert moved["services"]["materializer"]["volumes"] == ["pulse-data:/data"]


def test_gateway_listens_on_its_published_port_and_grafana_reaches_it_there() -> None:
    gateway = SERVICES["gateway"]
    port = gateway["environment"]["GATEWAY_PORT"]
    assert port == "8004"
    assert gateway["ports"] == [f"{port}:{port}"]
    gateway_url = SERVICES["grafana"]["environment"]["PULSE_BI_GATEWAY_URL"]
    assert gateway_url == f"http://gateway:{port}"


def test_grafana_installs_infinity_and_takes_its_admin_from_the_environment() -> None:
    environment = raw(FILES[1])["services"]["grafana"]["environment"]
    plugin = environment["GF_PLUGINS_PREINSTALL_SYNC"]
    assert plugin.startswith("yesoreyeram-infinity-datasource@")
    assert environment["GF_SECURITY_ADMIN_USER"] == "${GRAFANA_ADMIN_USER:-admin}"
    assert environment["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert SERVICES["grafana"]["ports"] == ["3000:3000"]


def test_grafana_does_not_start_without_an_admin_password() -> None:
    with pytest.raises(InterpolationError, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(raw(FILES[1]), {**ENV, "GRAFANA_ADMIN_PASSWORD": ""})


def test_env_example_lists_every_variable_with_the_compose_default() -> None:
    example = env_example()
    used: dict[str, str | None] = {}
    for name in FILES:
        used.update(variables(name))
    assert set(used) == set(example), "compose/.env.example and the compose files disagree"
    for var, default in used.items():
        if default is not None:
            assert example[var] == default, f"{var}: .env.example says {example[var]!r}"
