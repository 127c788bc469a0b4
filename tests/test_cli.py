"""The ``pulse-bi`` command group: every process and tool, and clear errors."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pulse_bi.cli import main


def test_every_process_and_tool_is_a_sub_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in (
        "materializer",
        "gateway",
        "simulate",
        "migrate",
        "dev",
        "backup",
        "restore",
        "rebuild",
    ):
        assert f"  {command}" in result.output


def test_migrate_status_lists_pending_migrations_until_upgrade(tmp_path: Path) -> None:
    env = {"DUCKDB_PATH": str(tmp_path / "pulse.duckdb")}
    runner = CliRunner()

    before = runner.invoke(main, ["migrate", "status"], env=env)
    upgraded = runner.invoke(main, ["migrate", "upgrade"], env=env)
    after = runner.invoke(main, ["migrate", "status"], env=env)

    assert before.exit_code == 0, before.output
    assert "version:  0" in before.output
    assert "0001_" in before.output
    assert upgraded.exit_code == 0, upgraded.output
    assert "up to date" in upgraded.output
    assert "pending:  none" in after.output
    assert "version:  0" not in after.output


def test_a_bad_setting_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["migrate", "status"], env={"DUCKDB_MEMORY_LIMIT": "a lot"})
    assert result.exit_code == 2
    assert "DUCKDB_MEMORY_LIMIT='a lot': expected a size like 512MB" in result.output


def test_materializer_check_fails_when_nothing_answers() -> None:
    result = CliRunner().invoke(
        main, ["materializer", "--check"], env={"MATERIALIZER_HTTP_PORT": "1"}
    )
    assert result.exit_code == 1
    assert "unhealthy" in result.output


def test_lifecycle_commands_turn_bad_input_into_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {
        "DUCKDB_PATH": str(tmp_path / "live.duckdb"),
        "NATS_URL": "nats://127.0.0.1:1",  # nothing answers: offline paths
        "ARCHIVE_PATH": str(tmp_path / "archive"),
    }
    missing = runner.invoke(main, ["backup", str(tmp_path / "b")], env=env)
    assert missing.exit_code == 2
    assert "does not exist: nothing to back up" in missing.output
    (tmp_path / "not-a-backup").mkdir()
    not_backup = runner.invoke(main, ["restore", str(tmp_path / "not-a-backup")], env=env)
    assert not_backup.exit_code == 2
    assert "no manifest.json" in not_backup.output
    nothing = runner.invoke(main, ["restore"], env=env)
    assert nothing.exit_code == 2
    assert "give a BACKUP" in nothing.output
    negative = runner.invoke(main, ["restore", "--to-sequence", "-1"], env=env)
    assert negative.exit_code == 2
    bad_timeout = runner.invoke(main, ["backup", "--timeout", "nan"], env=env)
    assert bad_timeout.exit_code == 2
    assert "--timeout" in bad_timeout.output
    same = runner.invoke(main, ["rebuild", "--output", str(tmp_path / "live.duckdb")], env=env)
    assert same.exit_code == 2
    assert "must not be DUCKDB_PATH" in same.output
