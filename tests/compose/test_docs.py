"""docs/DEPLOYMENT.md documents every setting, with the default the compose files use."""

from __future__ import annotations

import re

from tests.compose.compose import FILES, ROOT, env_example

DOC = (ROOT / "docs" / "DEPLOYMENT.md").read_text()


def _settings_table() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|", DOC, re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_setting_is_in_the_settings_table_with_its_default() -> None:
    table = _settings_table()
    example = env_example()
    assert set(table) == set(example)
    for name, value in example.items():
        documented = table[name]
        if value:
            assert documented == f"`{value}`", f"{name}: doc says {documented}, .env {value!r}"
        else:
            assert not documented.startswith("`"), f"{name} has no default but doc shows one"


def test_every_compose_file_and_the_dockerfile_are_described() -> None:
    for name in (*FILES, "Dockerfile", ".env.example"):
        assert f"compose/{name}" in DOC, name
