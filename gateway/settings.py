"""The gateway's settings: one frozen dataclass, read from the environment once at start.

Each field is one setting declared with `pulse_bi.settings.setting` (variable, kind,
default, doc); docs/GATEWAY.md's settings table is generated from these declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulse_bi.settings import (
    Bool,
    Choice,
    Float,
    Host,
    Int,
    NatsUrls,
    Secret,
    SettingsError,
    Words,
    check_settings,
    read_settings,
    setting,
    settings_of,
)

__all__ = ["Settings", "SettingsError", "env_name"]

_SECONDS = Float(0.01)
_WS_SECONDS = Float(0.05)
_COUNT = Int(0)
_POSITIVE = Int(1)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway can be told. Each field maps to one environment variable."""

    nats_url: str = setting(
        "NATS_URL", NatsUrls(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated"
    )
    host: str = setting("GATEWAY_HOST", Host(), "0.0.0.0", "interface uvicorn binds to")
    port: int = setting("GATEWAY_PORT", Int(1, 65535), 8004, "HTTP port")
    query_timeout: float = setting(
        "GATEWAY_QUERY_TIMEOUT",
        _SECONDS,
        2.0,
        "seconds to wait for one named-query reply before asking again",
    )
    query_retries: int = setting(
        "GATEWAY_QUERY_RETRIES",
        _COUNT,
        2,
        "times a named query with no reply (timeout, no responders) is asked again (see Upstream)",
    )
    cache_entries: int = setting(
        "GATEWAY_CACHE_ENTRIES", _COUNT, 2048, "named-query result cache size (0 disables)"
    )
    response_cache_entries: int = setting(
        "GATEWAY_RESPONSE_CACHE_ENTRIES",
        _COUNT,
        2048,
        "encoded HTTP response cache size (0 disables)",
    )
    version_ttl: float = setting(
        "GATEWAY_VERSION_TTL",
        _SECONDS,
        6.0,
        "seconds without a notice or heartbeat after which caches are bypassed (keep it "
        "about three times the materializer's `HEARTBEAT_INTERVAL`)",
    )
    cors_origins: tuple[str, ...] = setting(
        "GATEWAY_CORS_ORIGINS",
        Words(),
        (),
        "browser origins allowed by CORS and the WebSocket origin check, comma-separated; "
        "`*` for any",
    )
    jwt_secret: str | None = setting(
        "GATEWAY_JWT_SECRET", Secret(), None, "HS256 secret; enables auth", secret=True
    )
    jwt_jwks_url: str | None = setting(
        "GATEWAY_JWT_JWKS_URL", Secret(), None, "JWKS URL (RS256/ES256 keys); enables auth"
    )
    jwt_audience: str | None = setting(
        "GATEWAY_JWT_AUDIENCE", Secret(), None, "required `aud` claim of tokens"
    )
    jwt_issuer: str | None = setting(
        "GATEWAY_JWT_ISSUER", Secret(), None, "required `iss` claim of tokens"
    )
    max_depth: int = setting("GATEWAY_MAX_DEPTH", _POSITIVE, 10, "deepest selection nesting")
    max_aliases: int = setting("GATEWAY_MAX_ALIASES", _COUNT, 30, "most aliases per document")
    max_tokens: int = setting(
        "GATEWAY_MAX_TOKENS", _POSITIVE, 2000, "most lexical tokens per document"
    )
    max_document_bytes: int = setting(
        "GATEWAY_MAX_DOCUMENT_BYTES", _POSITIVE, 20_000, "largest `query` text, in bytes"
    )
    max_cost: int = setting(
        "GATEWAY_MAX_COST",
        _POSITIVE,
        150_000,
        'highest operation cost: fields times the list sizes they may return (see "Limits")',
    )
    max_introspection_depth: int = setting(
        "GATEWAY_MAX_INTROSPECTION_DEPTH",
        _POSITIVE,
        20,
        "deepest nesting under `__schema` / `__type`",
    )
    max_response_bytes: int = setting(
        "GATEWAY_MAX_RESPONSE_BYTES",
        Int(1024),
        16 * 1024 * 1024,
        "largest response body (and rows fetched for it); larger answers are refused with "
        "`RESPONSE_TOO_LARGE`",
    )
    request_timeout: float = setting(
        "GATEWAY_REQUEST_TIMEOUT",
        _SECONDS,
        10.0,
        "seconds one GraphQL HTTP request may take before `DEADLINE_EXCEEDED`",
    )
    public_stats: bool = setting(
        "GATEWAY_PUBLIC_STATS",
        Bool(),
        False,
        "serve `/stats` and `/metrics` without a token when JWT is on (e.g. for Prometheus)",
    )
    introspection: bool = setting(
        "GATEWAY_INTROSPECTION",
        Bool(),
        True,
        'answer `__schema` / `__type` (off: no "Did you mean" suggestions either)',
    )
    graphiql: bool = setting(
        "GATEWAY_GRAPHIQL", Bool(), True, "serve GraphiQL to browsers that GET `/graphql`"
    )
    ws_keepalive: float = setting(
        "GATEWAY_WS_KEEPALIVE",
        _WS_SECONDS,
        12.0,
        "seconds between WebSocket pings; a socket silent for two is dropped",
    )
    ws_init_timeout: float = setting(
        "GATEWAY_WS_INIT_TIMEOUT", _WS_SECONDS, 5.0, "seconds to send `connection_init`"
    )
    ws_max_subscriptions: int = setting(
        "GATEWAY_WS_MAX_SUBSCRIPTIONS", _POSITIVE, 100, "live subscriptions one socket may hold"
    )
    ws_send_queue: int = setting(
        "GATEWAY_WS_SEND_QUEUE",
        _POSITIVE,
        256,
        "frames buffered per socket before dropping a slow client",
    )
    ws_send_timeout: float = setting(
        "GATEWAY_WS_SEND_TIMEOUT",
        _WS_SECONDS,
        10.0,
        "seconds one frame may wait to be written before dropping a slow client (1008); "
        "also the grace for its close frame before the socket is aborted",
    )
    ws_compression: bool = setting(
        "GATEWAY_WS_COMPRESSION",
        Bool(),
        False,
        "accept permessage-deflate on WebSockets (a zlib context per socket; see Live queries)",
    )
    live_coalesce_ms: float = setting(
        "GATEWAY_LIVE_COALESCE_MS",
        Float(0),
        5.0,
        "milliseconds to gather a burst of notices before refreshing live queries",
    )
    live_concurrency: int = setting(
        "GATEWAY_LIVE_CONCURRENCY", _POSITIVE, 32, "live-query groups refreshed at once"
    )
    persisted_queries: str = setting(
        "GATEWAY_PERSISTED_QUERIES",
        Choice("off", "apq", "trusted"),
        "off",
        "persisted queries: `off`, `apq` (Automatic Persisted Queries) or `trusted` (only "
        "documents of the trusted-documents manifests run; see Persisted queries)",
    )
    apq_entries: int = setting(
        "GATEWAY_APQ_ENTRIES",
        _COUNT,
        1000,
        "documents remembered for APQ (by sha256), least recently used forgotten first",
    )
    trusted_documents: tuple[str, ...] = setting(
        "GATEWAY_TRUSTED_DOCUMENTS",
        Words(),
        (),
        "extra trusted-documents manifests (JSON files, comma-separated) besides the built-in one",
    )
    trusted_developer_tools: bool = setting(
        "GATEWAY_TRUSTED_DEVELOPER_TOOLS",
        Bool(),
        False,
        "in trusted mode, still serve GraphiQL and introspection-only documents",
    )
    compression_min_bytes: int = setting(
        "GATEWAY_COMPRESSION_MIN_BYTES",
        _COUNT,
        1024,
        "compress HTTP responses at least this large (gzip, or br when asked); 0 turns it off",
    )
    batching: bool = setting(
        "GATEWAY_BATCHING", Bool(), False, "accept a JSON array of operations in one POST"
    )
    max_batch_size: int = setting(
        "GATEWAY_MAX_BATCH_SIZE",
        _POSITIVE,
        10,
        "most operations in one batch; their costs add up under `GATEWAY_MAX_COST`",
    )
    sse_max_streams: int = setting(
        "GATEWAY_SSE_MAX_STREAMS",
        _POSITIVE,
        10_000,
        "GraphQL over Server-Sent Events streams open at once (graphql-sse protocol)",
    )
    metrics_max_operations: int = setting(
        "GATEWAY_METRICS_MAX_OPERATIONS",
        _COUNT,
        200,
        "distinct operation names labelled in /metrics; further names count as `other`",
    )
    tracing: bool = setting(
        "GATEWAY_TRACING",
        Bool(),
        False,
        "OpenTelemetry traces (needs the `tracing` extra); see Tracing",
    )
    export_concurrency: int = setting(
        "GATEWAY_EXPORT_CONCURRENCY",
        _POSITIVE,
        4,
        "exports one gateway runs at once; more get 429 (docs/EXPORTS.md)",
    )
    export_max_rows: int = setting(
        "GATEWAY_EXPORT_MAX_ROWS",
        _POSITIVE,
        5_000_000,
        "most rows one export may write; a larger one fails, never truncates (docs/EXPORTS.md)",
    )
    alert_rules: str | None = setting(
        "GATEWAY_ALERT_RULES",
        Secret(),
        None,
        "alert rules file (YAML or TOML); when set, this gateway evaluates and delivers alerts "
        "(docs/ALERTS.md; one replica only)",
    )
    alert_state: str | None = setting(
        "GATEWAY_ALERT_STATE",
        Secret(),
        None,
        "alert state file: rule states and undelivered notifications (docs/ALERTS.md, "
        '"Restarts"); empty: next to the rules file',
    )
    log_level: str = setting(
        "GATEWAY_LOG_LEVEL",
        Choice("critical", "error", "warning", "info", "debug"),
        "info",
        "log level of the gateway's loggers",
    )

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the settings from an environment mapping; raise SettingsError on bad values."""
        return read_settings(cls, environ)

    def validate(self) -> None:
        """Raise SettingsError when a field is out of bounds or fields contradict each other."""
        check_settings(self)
        if self.jwt_secret and self.jwt_jwks_url:
            raise SettingsError(
                "GATEWAY_JWT_JWKS_URL",
                self.jwt_jwks_url,
                "no JWKS URL while GATEWAY_JWT_SECRET is set: set one or the other, not both",
            )

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need a bearer token."""
        return bool(self.jwt_secret or self.jwt_jwks_url)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def env_name(field_name: str) -> str:
    """Environment variable of one settings field."""
    return settings_of(Settings)[field_name].env
