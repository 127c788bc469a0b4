"""The gateway's settings: one frozen dataclass, read from the environment once at start."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the gateway cannot use."""


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, raw: str, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value < minimum:
        raise SettingsError(f"{name} must be a number >= {minimum}, got {raw!r}")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _list(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _str(_name: str, raw: str) -> str:
    return raw


def _optional(_name: str, raw: str) -> str | None:
    return raw or None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway can be told. Each field maps to one environment variable."""

    #: NATS server(s) the gateway reaches the materializer through (comma-separated).
    nats_url: str = "nats://127.0.0.1:4222"
    #: Interface uvicorn binds to.
    host: str = "0.0.0.0"
    #: HTTP port of the gateway.
    port: int = 8004
    #: Seconds to wait for one named-query reply before asking again (or giving up).
    query_timeout: float = 2.0
    #: Times a named query with no reply (timeout, no responders) is asked again.
    query_retries: int = 2
    #: Entries in the named-query result cache (keyed by query, params and data version).
    cache_entries: int = 2048
    #: Entries in the HTTP response cache (encoded GraphQL responses by data version).
    response_cache_entries: int = 2048
    #: Seconds without a change notice or heartbeat after which cached results are not used.
    version_ttl: float = 6.0
    #: Browser origins allowed by CORS and the WebSocket origin check; "*" allows any.
    cors_origins: tuple[str, ...] = ()
    #: HS256 secret; when set, every request needs a valid bearer token.
    jwt_secret: str | None = None
    #: JWKS URL (RS256/ES256 keys); when set, every request needs a valid bearer token.
    jwt_jwks_url: str | None = None
    #: Required `aud` claim of tokens, if any.
    jwt_audience: str | None = None
    #: Required `iss` claim of tokens, if any.
    jwt_issuer: str | None = None
    #: Deepest selection nesting a document may have.
    max_depth: int = 10
    #: Most aliases a document may use.
    max_aliases: int = 30
    #: Most lexical tokens a document may have.
    max_tokens: int = 2000
    #: Largest document (the `query` text) in bytes.
    max_document_bytes: int = 20_000
    #: Highest cost an operation may have (fields times the list sizes they may return).
    max_cost: int = 100_000
    #: Deepest selection nesting inside introspection (`__schema`, `__type`).
    max_introspection_depth: int = 20
    #: Largest response body in bytes; larger answers are refused with RESPONSE_TOO_LARGE.
    max_response_bytes: int = 16 * 1024 * 1024
    #: Seconds one GraphQL request may take before it is answered with DEADLINE_EXCEEDED.
    request_timeout: float = 10.0
    #: Serve /stats and /metrics without a token when JWT auth is on (e.g. for Prometheus).
    public_stats: bool = False
    #: Answer introspection queries (`__schema`, `__type`).
    introspection: bool = True
    #: Serve GraphiQL to browsers that GET /graphql.
    graphiql: bool = True
    #: Seconds between WebSocket keep-alive pings; a socket silent for two is dropped.
    ws_keepalive: float = 12.0
    #: Seconds a WebSocket client has to send `connection_init`.
    ws_init_timeout: float = 5.0
    #: Live subscriptions one WebSocket may hold at once.
    ws_max_subscriptions: int = 100
    #: Outgoing messages buffered per WebSocket before a too-slow client is dropped.
    ws_send_queue: int = 256
    #: Seconds one frame may wait to be written (the socket's buffers full) before a
    #: too-slow client is dropped; also the grace for its close frame before an abort.
    ws_send_timeout: float = 10.0
    #: Offer permessage-deflate to WebSocket clients: a zlib context per socket and the
    #: shared payload compressed once per socket; off by default (docs/GATEWAY.md).
    ws_compression: bool = False
    #: Milliseconds to gather a burst of change notices before refreshing live queries.
    live_coalesce_ms: float = 5.0
    #: Live-query groups refreshed at the same time after a change.
    live_concurrency: int = 32
    #: Exports (``/export/...``) one gateway runs at once; more are answered 429.
    export_concurrency: int = 4
    #: Most rows one export may write; a larger one fails (docs/EXPORTS.md).
    export_max_rows: int = 5_000_000
    #: Alert rules file (YAML or TOML); when set, this gateway evaluates and delivers alerts.
    alert_rules: str | None = None
    #: Alert state file (states and undelivered notifications); default next to the rules.
    alert_state: str | None = None
    #: Log level of the gateway's loggers.
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the settings from an environment mapping; raise SettingsError on bad values."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            if name in environ:
                values[f.name] = _PARSERS[f.name](name, environ[name])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise SettingsError when fields contradict each other."""
        if self.jwt_secret and self.jwt_jwks_url:
            raise SettingsError("set GATEWAY_JWT_SECRET or GATEWAY_JWT_JWKS_URL, not both")
        if not 0 < self.port < 65536:
            raise SettingsError(f"GATEWAY_PORT must be 1-65535, got {self.port}")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise SettingsError(f"GATEWAY_LOG_LEVEL is not a log level: {self.log_level!r}")

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need a bearer token."""
        return bool(self.jwt_secret or self.jwt_jwks_url)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated)."""
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings


def env_name(field_name: str) -> str:
    """Environment variable of one settings field."""
    return "NATS_URL" if field_name == "nats_url" else "GATEWAY_" + field_name.upper()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "nats_url": _str,
    "host": _str,
    "port": lambda n, r: _int(n, r, 1),
    "query_timeout": lambda n, r: _float(n, r, 0.01),
    "query_retries": _int,
    "cache_entries": _int,
    "response_cache_entries": _int,
    "version_ttl": lambda n, r: _float(n, r, 0.01),
    "cors_origins": _list,
    "jwt_secret": _optional,
    "jwt_jwks_url": _optional,
    "jwt_audience": _optional,
    "jwt_issuer": _optional,
    "max_depth": lambda n, r: _int(n, r, 1),
    "max_aliases": _int,
    "max_tokens": lambda n, r: _int(n, r, 1),
    "max_document_bytes": lambda n, r: _int(n, r, 1),
    "max_cost": lambda n, r: _int(n, r, 1),
    "max_introspection_depth": lambda n, r: _int(n, r, 1),
    "max_response_bytes": lambda n, r: _int(n, r, 1024),
    "request_timeout": lambda n, r: _float(n, r, 0.01),
    "public_stats": _bool,
    "introspection": _bool,
    "graphiql": _bool,
    "ws_keepalive": lambda n, r: _float(n, r, 0.05),
    "ws_init_timeout": lambda n, r: _float(n, r, 0.05),
    "ws_send_queue": lambda n, r: _int(n, r, 1),
    "ws_send_timeout": lambda n, r: _float(n, r, 0.05),
    "ws_max_subscriptions": lambda n, r: _int(n, r, 1),
    "ws_compression": _bool,
    "live_coalesce_ms": _float,
    "live_concurrency": lambda n, r: _int(n, r, 1),
    "export_concurrency": lambda n, r: _int(n, r, 1),
    "export_max_rows": lambda n, r: _int(n, r, 1),
    "alert_rules": _optional,
    "alert_state": _optional,
    "log_level": _str,
}
