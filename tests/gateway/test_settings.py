"""Settings: read from the environment, clear errors, and every field documented."""

from __future__ import annotations

import dataclasses
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
            "GATEWAY_MAX_COST": "5000",
            "GATEWAY_MAX_INTROSPECTION_DEPTH": "16",
            "GATEWAY_MAX_RESPONSE_BYTES": "65536",
            "GATEWAY_REQUEST_TIMEOUT": "2.5",
            "GATEWAY_PUBLIC_STATS": "true",
            "UNRELATED": "x",
        }
    )
    assert settings.nats_url == "nats://nats:4222"
    assert settings.port == 9000
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.introspection is False
    assert settings.query_timeout == 0.5
    assert (settings.max_cost, settings.max_introspection_depth) == (5000, 16)
    assert (settings.max_response_bytes, settings.request_timeout) == (65536, 2.5)
    assert settings.public_stats
    assert Settings.from_env({}) == Settings()


def test_a_jwt_secret_and_a_jwks_url_are_not_both_set() -> None:
    with pytest.raises(SettingsError, match="not both"):
        Settings.from_env({"GATEWAY_JWT_SECRET": "s", "GATEWAY_JWT_JWKS_URL": "http://k"})


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]
