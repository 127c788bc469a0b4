"""The gateway's errors, and the one place that turns any error into an HTTP or GraphQL answer."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

log = logging.getLogger("gateway")


class GatewayError(Exception):
    """Base of the errors the gateway raises on purpose; carries its HTTP status and code."""

    status: int = 500
    code: str = "INTERNAL_SERVER_ERROR"

    def __init_subclass__(cls, status: int | None = None, code: str | None = None) -> None:
        """Each error class names its HTTP status and code in its class line."""
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError, status=400, code="BAD_REQUEST"):
    """The HTTP request itself is malformed (not JSON, wrong parameter types, too large)."""


class BadUserInput(GatewayError, status=400, code="BAD_USER_INPUT"):
    """An argument value the materializer or the gateway rejects (e.g. `from` after `to`)."""


class Unauthorized(GatewayError, status=401, code="UNAUTHENTICATED"):
    """No valid credentials: HTTP 401, WebSocket close 4401."""

    ws_close = 4401


class InvalidToken(Unauthorized):
    """A token that is malformed, badly signed or expired: HTTP 401, WebSocket close 4403."""

    ws_close = 4403


class Forbidden(GatewayError, status=403, code="FORBIDDEN"):
    """Credentials present but refused (bad signature, expired, wrong origin): 403 / 4403."""

    ws_close = 4403


class ResponseTooLarge(GatewayError, status=400, code="RESPONSE_TOO_LARGE"):
    """An answer (or the rows fetched for it) larger than GATEWAY_MAX_RESPONSE_BYTES."""


class DeadlineExceeded(GatewayError, status=504, code="DEADLINE_EXCEEDED"):
    """A request that took longer than GATEWAY_REQUEST_TIMEOUT."""


class UpstreamUnavailable(GatewayError, status=503, code="UPSTREAM_UNAVAILABLE"):
    """The materializer (or NATS) cannot be reached right now; the gateway retries by itself."""


class UpstreamError(GatewayError, status=502, code="UPSTREAM_ERROR"):
    """The materializer answered with an error of its own."""


def format_graphql_error(error: GraphQLError) -> dict[str, Any]:
    """A GraphQL error as JSON, with `extensions.code`; unexpected exceptions are masked."""
    formatted: dict[str, Any] = error.formatted  # type: ignore[assignment]
    original = error.original_error
    if original is None:
        return formatted
    if isinstance(original, GatewayError):
        extensions = dict(formatted.get("extensions") or {})
        extensions["code"] = original.code
        formatted = {**formatted, "message": original.message, "extensions": extensions}
    elif not isinstance(original, GraphQLError):
        # A bug, not a user error: log the traceback, give the client no internals.
        log.error("resolver failed", exc_info=original)
        formatted = {
            **formatted,
            "message": "Internal server error",
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    return formatted


def request_error(message: str, code: str) -> dict[str, Any]:
    """A GraphQL-shaped error for a request that never reached execution."""
    return {"message": message, "extensions": {"code": code}}


def gateway_error_body(error: GatewayError) -> dict[str, Any]:
    """The JSON body of an HTTP error answer."""
    return {"errors": [request_error(error.message, error.code)]}
