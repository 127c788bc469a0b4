"""Settings are read once from the environment and bad values stop start-up clearly."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from materializer.settings import Settings
from pulse_bi.settings import SettingsError, settings_of

DOCS = Path(__file__).parents[2] / "docs" / "OPERATIONS.md"


def test_defaults_put_duckdb_under_data_path() -> None:
    settings = Settings.from_env({"DATA_PATH": "/srv/pulse"})
    assert settings.duckdb_path == Path("/srv/pulse/pulse_bi.duckdb")


def test_duckdb_path_overrides_data_path() -> None:
    settings = Settings.from_env({"DATA_PATH": "/srv/pulse", "DUCKDB_PATH": "/x/y.duckdb"})
    assert settings.duckdb_path == Path("/x/y.duckdb")


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


@pytest.mark.parametrize(
    "raw", ["1001", "99999999999999999", "-1", "5.5", "1e3", "5ms", " ", "\u0665"]
)
def test_batch_max_wait_ms_beyond_a_second_or_not_a_whole_number_is_refused(raw: str) -> None:
    # Every batch of a writer that is behind pays the wait: hours of it would stall ingest.
    with pytest.raises(SettingsError, match=r"^BATCH_MAX_WAIT_MS=.*from 0 to 1000"):
        Settings.from_env({"BATCH_MAX_WAIT_MS": raw})


@pytest.mark.parametrize(("raw", "expected"), [("", 5), ("0", 0), ("1000", 1000), ("007", 7)])
def test_batch_max_wait_ms_reads_whole_milliseconds_up_to_a_second(raw: str, expected: int) -> None:
    assert Settings.from_env({"BATCH_MAX_WAIT_MS": raw}).batch_max_wait_ms == expected


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    env_names = [declared.env for declared in settings_of(Settings).values()]
    assert len(env_names) == len(dataclasses.fields(Settings))
    missing = [name for name in env_names if f"| `{name}` |" not in text]
    assert not missing, f"docs/OPERATIONS.md does not document {missing}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1GB", 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29), ("0", 0), ("0MB", 0), ("", 0)],
)
def test_disk_free_min_is_read_as_bytes(raw: str, expected: int) -> None:
    assert Settings.from_env({"DISK_FREE_MIN": raw}).disk_free_min_bytes == expected
