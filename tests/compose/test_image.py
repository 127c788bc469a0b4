"""The Python services' image: slim, multi-arch, non-root, and runs the commands compose uses."""

from __future__ import annotations

import re
import subprocess
import tomllib

import click
import pytest

from tests.compose.compose import (
    COMPOSE_DIR,
    FILES,
    ROOT,
    dockerignore_excludes,
    dockerignore_patterns,
    raw,
)

DOCKERFILE = COMPOSE_DIR / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage."""
    groups: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(instruction)
    return groups


def test_every_stage_is_a_slim_python_image_for_any_platform() -> None:
    args = dict(
        arg.split("=", 1) for keyword, arg in instructions() if keyword == "ARG" and "=" in arg
    )
    for stage in stages():
        image = stage[0][1].split()[0]
        assert not image.startswith("--platform"), "a pinned platform breaks multi-arch"
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", image), image


def test_final_stage_runs_pulse_bi_as_an_unprivileged_user() -> None:
    final = dict(stages()[-1])
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert final["ENTRYPOINT"] == '["pulse-bi"]'
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "pulse-bi" in scripts


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    patterns = dockerignore_patterns()
    for keyword, arg in instructions():
        if keyword == "COPY" and not arg.startswith("--from"):
            *sources, _destination = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not dockerignore_excludes(patterns, source), f"{source} is ignored"


def test_build_context_holds_the_packages_and_nothing_private() -> None:
    patterns = dockerignore_patterns()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sent = {path for path in tracked if not dockerignore_excludes(patterns, path)}
    assert "pulse_bi/cli.py" in sent and "pyproject.toml" in sent
    assert {path.split("/")[0] for path in sent} == {
        "pulse_bi",
        "materializer",
        "gateway",
        "pyproject.toml",
        "README.md",
    }
    for private in (
        ".venv/bin/python",
        ".git/config",
        "compose/.env",
        ".env",
        "data/x.duckdb",
        "tests/conftest.py",
        "pulse_bi/__pycache__/cli.cpython-311.pyc",
    ):
        assert dockerignore_excludes(patterns, private), private


def _command(path: list[str]) -> click.Command:
    from pulse_bi.cli import main

    command: click.Command = main
    context = click.Context(main)
    for name in path:
        assert isinstance(command, click.Group), f"{name}: parent is not a group"
        found = command.get_command(context, name)
        assert found is not None, f"pulse-bi has no command {' '.join(path)!r}"
        command = found
    return command


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


@pytest.mark.parametrize(
    ("service", "file"),
    [("materializer", FILES[1]), ("gateway", FILES[1]), ("simulator", FILES[2])],
)
def test_compose_command_is_a_pulse_bi_command_with_those_options(service: str, file: str) -> None:
    spec = raw(file)["services"][service]
    words = [w for w in spec["command"] if not w.startswith("$")]
    path = [w for w in words if not w.startswith("-")]
    command = _command(path)
    for option in (w for w in words if w.startswith("-")):
        assert option in _options(command), f"pulse-bi {' '.join(path)} has no {option}"
    envvars = {name for param in command.params for name in _envvars(param)}
    for name in spec.get("environment", {}):
        if name.startswith("PULSE_SIM_"):
            assert name in envvars, f"pulse-bi {' '.join(path)} does not read {name}"


def _envvars(param: click.Parameter) -> list[str]:
    envvar = getattr(param, "envvar", None)
    if envvar is None:
        return []
    return [envvar] if isinstance(envvar, str) else list(envvar)


def test_materializer_health_check_is_the_cli_probe() -> None:
    test = raw(FILES[1])["services"]["materializer"]["healthcheck"]["test"]
    assert test[1:] == ["pulse-bi", "materializer", "--check"]
    assert "--check" in _options(_command(["materializer"]))
