"""Settings are read once from the environment and bad values stop start-up clearly."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from materializer.settings import Settings, SettingsError
from pulse_bi.settings import settings_of

DOCS = Path(__file__).parents[2] / "docs" / "OPERATIONS.md"


def test_defaults_put_duckdb_under_data_path() -> None:
    settings = Settings.from_env({"DATA_PATH": "/srv/pulse"})
    assert settings.duckdb_path == Path("/srv/pulse/pulse_bi.duckdb")


def test_duckdb_path_overrides_data_path() -> None:
    settings = Settings.from_env({"DATA_PATH": "/srv/pulse", "DUCKDB_PATH": "/x/y.duckdb"})
    assert settings.duckdb_path == Path("/x/y.duckdb")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BATCH_MAX_EVENTS": "lots"}, "BATCH_MAX_EVENTS='lots': expected a whole number"),
        ({"BATCH_MAX_EVENTS": "0"}, "BATCH_MAX_EVENTS='0': expected a whole number 1 or more"),
        ({"MATERIALIZER_HTTP_PORT": "70000"}, "expected a whole number from 0 to 65535"),
        ({"NATS_URL": "localhost:4222"}, "NATS_URL='localhost:4222': expected nats://host:port"),
        ({"DUCKDB_MEMORY_LIMIT": "lots"}, "DUCKDB_MEMORY_LIMIT='lots': expected a size"),
        ({"HEARTBEAT_INTERVAL": "-1"}, "HEARTBEAT_INTERVAL='-1': expected a number greater than 0"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL='chatty': expected one of DEBUG, INFO, WARNING"),
        ({"DISK_FREE_MIN": "plenty"}, "DISK_FREE_MIN='plenty': expected a size"),
        ({"DISK_FREE_MIN": "-1GB"}, "DISK_FREE_MIN='-1GB': expected a size"),
        ({"FAULT_RETRY_MAX": "0"}, "FAULT_RETRY_MAX='0': expected a number greater than 0"),
        ({"FAULT_RETRY_MAX": "soon"}, "FAULT_RETRY_MAX='soon': expected a number"),
        ({"FAULT_RETRY_MAX": "nan"}, "FAULT_RETRY_MAX='nan': expected a number greater than 0"),
        ({"HEARTBEAT_INTERVAL": "inf"}, "HEARTBEAT_INTERVAL='inf': expected a number"),
        ({"CHECKPOINT_INTERVAL": "-5"}, "CHECKPOINT_INTERVAL='-5': expected a number 0 or more"),
    ],
)
def test_bad_values_are_refused_with_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_checkpoint_interval_zero_means_only_by_wal_size() -> None:
    assert Settings.from_env({"CHECKPOINT_INTERVAL": "0"}).checkpoint_interval == 0
    assert Settings.from_env({}).checkpoint_interval == 300


def test_bad_setting_stops_the_process_at_start_up_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pulse_bi", "materializer"],
        env={"BATCH_MAX_EVENTS": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "BATCH_MAX_EVENTS='lots': expected a whole number 1 or more" in result.stderr


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    env_names = [declared.env for declared in settings_of(Settings).values()]
    assert len(env_names) == len(dataclasses.fields(Settings))
    missing = [name for name in env_names if f"| `{name}` |" not in text]
    assert not missing, f"docs/OPERATIONS.md does not document {missing}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1GB", 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29), ("0", 0), ("", 0)],
)
def test_disk_free_min_is_read_as_bytes(raw: str, expected: int) -> None:
    assert Settings.from_env({"DISK_FREE_MIN": raw}).disk_free_min_bytes == expected
