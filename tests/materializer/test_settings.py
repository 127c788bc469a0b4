"""Settings are read once from the environment and bad values stop start-up clearly."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from materializer.settings import Settings, SettingsError

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
        ({"BATCH_MAX_EVENTS": "lots"}, "BATCH_MAX_EVENTS='lots' is not a whole number"),
        ({"BATCH_MAX_EVENTS": "0"}, "BATCH_MAX_EVENTS=0 must be >= 1"),
        ({"MATERIALIZER_HTTP_PORT": "70000"}, "must be between 0 and 65535"),
        ({"NATS_URL": "localhost:4222"}, "has no scheme"),
        ({"DUCKDB_MEMORY_LIMIT": "lots"}, "is not a size"),
        ({"HEARTBEAT_INTERVAL": "-1"}, "must be greater than 0"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL 'CHATTY' is not one of"),
        ({"DISK_FREE_MIN": "plenty"}, "DISK_FREE_MIN 'plenty' is not a size"),
        ({"DISK_FREE_MIN": "-1GB"}, "DISK_FREE_MIN '-1GB' is not a size"),
        ({"FAULT_RETRY_MAX": "0"}, "FAULT_RETRY_MAX=0 must be greater than 0"),
        ({"FAULT_RETRY_MAX": "soon"}, "FAULT_RETRY_MAX='soon' is not a number"),
        ({"FAULT_RETRY_MAX": "nan"}, "FAULT_RETRY_MAX=nan is not a finite number"),
        ({"HEARTBEAT_INTERVAL": "inf"}, "HEARTBEAT_INTERVAL=inf is not a finite number"),
        ({"CHECKPOINT_INTERVAL": "-5"}, "CHECKPOINT_INTERVAL=-5 must be 0 or more"),
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
    assert "BATCH_MAX_EVENTS='lots' is not a whole number" in result.stderr


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    env_names = re.findall(r"#: ([A-Z_]+):", inspect.getsource(Settings))
    assert len(env_names) == len(Settings.documented_names())
    missing = [name for name in env_names if f"`{name}`" not in text]
    assert not missing, f"docs/OPERATIONS.md does not document {missing}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1GB", 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29), ("0", 0), ("", 0)],
)
def test_disk_free_min_is_read_as_bytes(raw: str, expected: int) -> None:
    assert Settings.from_env({"DISK_FREE_MIN": raw}).disk_free_min_bytes == expected
