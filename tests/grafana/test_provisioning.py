"""The provisioning files give Grafana what it needs to load the datasource and dashboards."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.grafana.infinity import DASHBOARD_DIR, PLUGIN_ID, PROVISIONING_DIR, ROOT

EXPECTED_UIDS = {"sales-revenue-001", "inventory-stock-001", "cashflow-ar-001"}


def _yaml(path: str) -> dict[str, Any]:
    return yaml.safe_load((PROVISIONING_DIR / path).read_text())


@pytest.fixture(scope="module")
def datasource() -> dict[str, Any]:
    """The one provisioned datasource."""
    document = _yaml("datasources/pulse-bi.yml")
    assert document["apiVersion"] == 1
    (only,) = document["datasources"]
    return only


@pytest.fixture(scope="module")
def grafana_service() -> dict[str, Any]:
    """The grafana service of the compose file that runs it."""
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.bi.yml").read_text())
    return compose["services"]["grafana"]


def _mount_targets(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to compose/) of a service's bind mounts."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def test_datasource_is_the_infinity_plugin_with_a_fixed_uid(datasource: dict[str, Any]) -> None:
    assert datasource["type"] == PLUGIN_ID
    assert datasource["uid"] == "pulse-bi-gateway"
    assert datasource["access"] == "proxy"
    assert datasource["editable"] is False


def test_datasource_points_at_the_gateway_url_set_in_the_grafana_container(
    datasource: dict[str, Any], grafana_service: dict[str, Any]
) -> None:
    assert datasource["url"] == "${PULSE_BI_GATEWAY_URL}"
    configured = grafana_service["environment"]["PULSE_BI_GATEWAY_URL"]
    assert configured == "${PULSE_BI_GATEWAY_URL:-http://gateway:8004}"


def test_datasource_health_check_asks_the_gateway_health_endpoint(
    datasource: dict[str, Any],
) -> None:
    json_data = datasource["jsonData"]
    assert json_data["customHealthCheckEnabled"] is True
    assert json_data["customHealthCheckUrl"] == datasource["url"] + "/health"


def test_datasource_may_only_reach_the_gateway(datasource: dict[str, Any]) -> None:
    assert datasource["jsonData"]["allowedHosts"] == [datasource["url"]]


def test_dashboard_provider_loads_the_mounted_dashboards_into_erp_analytics(
    grafana_service: dict[str, Any],
) -> None:
    document = _yaml("dashboards/pulse-bi.yml")
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "ERP Analytics"
    assert provider["allowUiUpdates"] is False
    mounts = _mount_targets(grafana_service)
    path = provider["options"]["path"]
    assert mounts[path] == "../grafana/dashboards", "the provider path must be the mount"
    assert (ROOT / "compose" / mounts[path]).resolve() == DASHBOARD_DIR


def test_grafana_container_mounts_both_provisioning_directories(
    grafana_service: dict[str, Any],
) -> None:
    mounts = _mount_targets(grafana_service)
    for kind in ("datasources", "dashboards"):
        source = mounts[f"/etc/grafana/provisioning/{kind}"]
        assert (ROOT / "compose" / source).resolve() == PROVISIONING_DIR / kind


def test_home_dashboard_is_a_provisioned_one(grafana_service: dict[str, Any]) -> None:
    home = grafana_service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    directory, _, name = home.rpartition("/")
    assert _mount_targets(grafana_service)[directory] == "../grafana/dashboards"
    assert (DASHBOARD_DIR / name).is_file()


def test_every_variable_the_provisioning_files_expand_is_set_in_the_grafana_container(
    grafana_service: dict[str, Any],
) -> None:
    used = set()
    for path in PROVISIONING_DIR.rglob("*.yml"):
        used |= set(re.findall(r"\$\{?(\w+)\}?", path.read_text()))
    assert used, "the datasource URL comes from the environment"
    assert used <= set(grafana_service["environment"]), used - set(grafana_service["environment"])
