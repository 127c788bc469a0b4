"""Settings: read from the environment, clear errors, and every field documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError, env_name

DOCS = Path(__file__).resolve().parents[2] / "docs" / "GATEWAY.md"


def test_every_setting_is_documented_in_gateway_md() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [
        env_name(f.name)
        for f in dataclasses.fields(Settings)
        if f"| `{env_name(f.name)}` |" not in text
    ]
    assert not missing, f"document these in docs/GATEWAY.md: {missing}"


def test_values_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "NATS_URL": "nats://nats:4222",
            "GATEWAY_PORT": "9000",
            "GATEWAY_CORS_ORIGINS": "http://a.example, http://b.example",
            "GATEWAY_INTROSPECTION": "false",
            "GATEWAY_QUERY_TIMEOUT": "0.5",
            "UNRELATED": "x",
        }
    )
    assert settings.nats_url == "nats://nats:4222"
    assert settings.port == 9000
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.introspection is False
    assert settings.query_timeout == 0.5
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GATEWAY_PORT": "http"}, "GATEWAY_PORT='http': expected a whole number from 1 to 65535"),
        ({"GATEWAY_PORT": "70000"}, "GATEWAY_PORT='70000': expected a whole number from 1"),
        ({"GATEWAY_MAX_DEPTH": "0"}, "GATEWAY_MAX_DEPTH='0': expected a whole number 1 or more"),
        ({"GATEWAY_INTROSPECTION": "maybe"}, "GATEWAY_INTROSPECTION='maybe': expected true or"),
        ({"GATEWAY_QUERY_TIMEOUT": "nan"}, "GATEWAY_QUERY_TIMEOUT='nan': expected a number"),
        ({"GATEWAY_JWT_SECRET": "s", "GATEWAY_JWT_JWKS_URL": "http://k"}, "not both"),
        ({"GATEWAY_LOG_LEVEL": "loud"}, "GATEWAY_LOG_LEVEL='loud': expected one of"),
    ],
)
def test_bad_values_raise_a_clear_settings_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(environ)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]
