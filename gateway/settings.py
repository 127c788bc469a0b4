"""The gateway's settings: one frozen dataclass, read from the environment once at start.

Each field is one `pulse_bi.settings.setting` (kind, default, doc), read from the variable
``GATEWAY_`` + its name in capitals (``NATS_URL`` aside, which the materializer shares).
docs/GATEWAY.md's settings table is generated from these declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

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

    env_prefix: ClassVar[str] = "GATEWAY_"

    nats_url: str = setting(
        NatsUrls(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated", env="NATS_URL"
    )
    host: str = setting(Host(), "0.0.0.0", "interface uvicorn binds to")
    port: int = setting(Int(1, 65535), 8004, "HTTP port")
    query_timeout: float = setting(
        _SECONDS, 2.0, "seconds to wait for one named-query reply before asking again"
    )
    query_retries: int = setting(
        _COUNT,
        2,
        "times a named query with no reply (timeout, no responders) is asked again (see Upstream)",
    )
    cache_entries: int = setting(_COUNT, 2048, "named-query result cache size (0 disables)")
    response_cache_entries: int = setting(
        _COUNT, 2048, "encoded HTTP response cache size (0 disables)"
    )
    version_ttl: float = setting(
        _SECONDS,
        6.0,
        "seconds without a notice or heartbeat after which caches are bypassed (keep it "
        "about three times the materializer's `HEARTBEAT_INTERVAL`)",
    )
    cors_origins: tuple[str, ...] = setting(
        Words(),
        (),
        "browser origins allowed by CORS and the WebSocket origin check, comma-separated; "
        "`*` for any",
    )
    jwt_secret: str | None = setting(Secret(), None, "HS256 secret; enables auth", secret=True)
    jwt_jwks_url: str | None = setting(Secret(), None, "JWKS URL (RS256/ES256 keys); enables auth")
    jwt_audience: str | None = setting(Secret(), None, "required `aud` claim of tokens")
    jwt_issuer: str | None = setting(Secret(), None, "required `iss` claim of tokens")
    max_depth: int = setting(_POSITIVE, 10, "deepest selection nesting")
    max_aliases: int = setting(_COUNT, 30, "most aliases per document")
    max_tokens: int = setting(_POSITIVE, 2000, "most lexical tokens per document")
    max_document_bytes: int = setting(_POSITIVE, 20_000, "largest `query` text, in bytes")
    max_cost: int = setting(
        _POSITIVE,
        200_000,
        'highest operation cost: fields times the list sizes they may return (see "Limits")',
    )
    max_introspection_depth: int = setting(
        _POSITIVE, 20, "deepest nesting under `__schema` / `__type`"
    )
    max_response_bytes: int = setting(
        Int(1024),
        16 * 1024 * 1024,
        "largest response body (and rows fetched for it); larger answers are refused with "
        "`RESPONSE_TOO_LARGE`",
    )
    request_timeout: float = setting(
        _SECONDS, 10.0, "seconds one GraphQL HTTP request may take before `DEADLINE_EXCEEDED`"
    )
    public_stats: bool = setting(
        Bool(),
        False,
        "serve `/stats` and `/metrics` without a token when JWT is on (e.g. for Prometheus)",
    )
    introspection: bool = setting(
        Bool(), True, 'answer `__schema` / `__type` (off: no "Did you mean" suggestions either)'
    )
    graphiql: bool = setting(Bool(), True, "serve GraphiQL to browsers that GET `/graphql`")
    ws_keepalive: float = setting(
        _WS_SECONDS, 12.0, "seconds between WebSocket pings; a socket silent for two is dropped"
    )
    ws_init_timeout: float = setting(_WS_SECONDS, 5.0, "seconds to send `connection_init`")
    ws_max_subscriptions: int = setting(_POSITIVE, 100, "live subscriptions one socket may hold")
    ws_send_queue: int = setting(
        _POSITIVE, 256, "frames buffered per socket before dropping a slow client"
    )
    ws_send_timeout: float = setting(
        _WS_SECONDS,
        10.0,
        "seconds one frame may wait to be written before dropping a slow client (1008); "
        "also the grace for its close frame before the socket is aborted",
    )
    ws_compression: bool = setting(
        Bool(),
        False,
        "accept permessage-deflate on WebSockets (a zlib context per socket; see Live queries)",
    )
    live_coalesce_ms: float = setting(
        # Longer than a minute and live queries stop being live.
        Float(0, 60_000),
        5.0,
        "milliseconds after a refresh of live queries before the next one; a notice after "
        "a quiet spell refreshes at once",
    )
    live_rest_ratio: float = setting(
        Float(0, 100),
        2.0,
        "a live query is charged at most 1 / (1 + ratio) of the time for its refreshes "
        "(2.0: a third; a refresh is charged the gateway's time and the materializer's CPU "
        "time for it), resting once it is more than 0.25 s ahead of that; 0: no rest",
    )
    live_concurrency: int = setting(_POSITIVE, 32, "live-query groups refreshed at once")
    persisted_queries: str = setting(
        Choice("off", "apq", "trusted"),
        "off",
        "persisted queries: `off`, `apq` (Automatic Persisted Queries) or `trusted` (only "
        "documents of the trusted-documents manifests run; see Persisted queries)",
    )
    apq_entries: int = setting(
        _COUNT,
        1000,
        "documents remembered for APQ (by sha256), least recently used forgotten first",
    )
    trusted_documents: tuple[str, ...] = setting(
        Words(),
        (),
        "extra trusted-documents manifests (JSON files, comma-separated) besides the built-in one",
    )
    trusted_developer_tools: bool = setting(
        Bool(), False, "in trusted mode, still serve GraphiQL and introspection-only documents"
    )
    compression_min_bytes: int = setting(
        _COUNT,
        1024,
        "compress HTTP responses at least this large (gzip, or br when asked); 0 turns it off",
    )
    batching: bool = setting(Bool(), False, "accept a JSON array of operations in one POST")
    max_batch_size: int = setting(
        _POSITIVE, 10, "most operations in one batch; their costs add up under `GATEWAY_MAX_COST`"
    )
    sse_max_streams: int = setting(
        _POSITIVE,
        10_000,
        "GraphQL over Server-Sent Events streams open at once (graphql-sse protocol)",
    )
    metrics_max_operations: int = setting(
        _COUNT, 200, "distinct operation names labelled in /metrics; further names count as `other`"
    )
    tracing: bool = setting(
        Bool(), False, "OpenTelemetry traces (needs the `tracing` extra); see Tracing"
    )
    export_concurrency: int = setting(
        _POSITIVE, 4, "exports one gateway runs at once; more get 429 (docs/EXPORTS.md)"
    )
    export_max_rows: int = setting(
        _POSITIVE,
        5_000_000,
        "most rows one export may write; a larger one fails, never truncates (docs/EXPORTS.md)",
    )
    alert_rules: str | None = setting(
        Secret(),
        None,
        "alert rules file (YAML or TOML); when set, this gateway evaluates and delivers alerts "
        "(docs/ALERTS.md; one replica only)",
    )
    alert_state: str | None = setting(
        Secret(),
        None,
        "alert state file: rule states and undelivered notifications (docs/ALERTS.md, "
        '"Restarts"); empty: next to the rules file',
    )
    log_level: str = setting(
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
