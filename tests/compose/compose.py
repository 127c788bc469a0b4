"""Reading the compose files as Docker Compose does, for checks without a Docker engine.

Compose interpolates ``${VAR}`` forms from the environment and ``.env``, then merges the
files given with ``-f`` in order into one project whose relative paths are resolved
from the first file's directory (compose/). This module does the parts the checks need.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
FILES = ("docker-compose.base.yml", "docker-compose.bi.yml", "docker-compose.demo.yml")
SCHEMA_PATH = Path(__file__).with_name("compose-spec.json")
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"


class InterpolationError(ValueError):
    """A required variable (``${VAR:?message}``) has no value."""


@cache
def raw(name: str) -> dict[str, Any]:
    """One compose file as YAML (anchors and merge keys resolved), not interpolated."""
    return yaml.safe_load((COMPOSE_DIR / name).read_text())


def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema (vendored, see compose-spec.SOURCE.md)."""
    return json.loads(SCHEMA_PATH.read_text())


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable syntax: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR:+a}."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        empty = value is None or value == ""
        if op in (":-", "-"):
            return arg if (empty if op == ":-" else value is None) else str(value)
        if op in (":?", "?"):
            if empty if op == ":?" else value is None:
                raise InterpolationError(f"{name}: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if (empty if op == ":+" else value is None) else arg
        return "" if value is None else value

    return _VARIABLE.sub(replace, text)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a parsed compose document."""
    if isinstance(value, str):
        return interpolate_text(value, env)
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    return value


def variables(name: str) -> dict[str, str | None]:
    """Variables a compose file reads, with the default it gives each (None: no default)."""
    found: dict[str, str | None] = {}
    text = (COMPOSE_DIR / name).read_text()
    for match in _VARIABLE.finditer(text):
        var = match.group("braced") or match.group("bare")
        if var is None:
            continue
        default = match.group("arg") if match.group("op") in (":-", "-") else None
        if found.get(var) is None:
            found[var] = default
    return found


def env_example() -> dict[str, str]:
    """Every variable of compose/.env.example, commented out or not, with its value."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"#?\s?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge compose documents in order, as ``docker compose -f a -f b`` does.

    Mappings merge key by key (later wins for scalars); the lists these files use
    (ports, volumes) are not overridden across files, which the tests check.
    """
    merged: dict[str, Any] = {}
    for document in documents:
        _merge_into(merged, copy.deepcopy(document))
    return merged


def _merge_into(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


_SIZE = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?")
_FACTORS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def size_bytes(text: str) -> int:
    """A Docker/DuckDB/Go size (256M, 1G, 512MB, 200MiB) in bytes (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _FACTORS[unit])


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore patterns leave ``path`` out of the build context.

    As Docker's pattern matcher: the last pattern matching the path or one of its
    parent directories decides; ``!`` re-includes; ``*`` stays within one path part,
    ``**`` spans any number of them.
    """
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        regex = _pattern_regex(body.strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_patterns() -> list[str]:
    """The patterns of the repository's .dockerignore, comments and blanks dropped."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
