"""Who may ask: JWT bearer tokens (HS256 secret or JWKS), CORS and the WebSocket origin check."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import jwt

from gateway.errors import InvalidToken, Unauthorized
from gateway.settings import Settings

#: Claims that are times (RFC 7519 NumericDate: seconds since the epoch, a JSON number).
_NUMERIC_DATES = ("exp", "nbf", "iat")
#: Asymmetric algorithms accepted from a JWKS; HS256 only with the shared secret.
_JWKS_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class Authenticator:
    """Checks bearer tokens when JWT auth is configured; lets everything through otherwise."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.auth_enabled
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None

    async def from_header(self, authorization: str | None) -> dict[str, Any]:
        """Claims of an `Authorization: Bearer …` header."""
        if not self.enabled:
            return {}
        if not authorization:
            raise Unauthorized("missing bearer token (Authorization: Bearer <JWT>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <JWT>'")
        return await self.verify(token.strip())

    async def from_init_payload(self, payload: Any) -> dict[str, Any]:
        """Claims of a WebSocket `connection_init` payload (`Authorization` or `token`)."""
        if not self.enabled:
            return {}
        if not isinstance(payload, dict):
            raise Unauthorized("connection_init needs a payload with a bearer token")
        header = payload.get("Authorization") or payload.get("authorization")
        if isinstance(header, str) and header:
            return await self.from_header(header)
        token = payload.get("token")
        if isinstance(token, str) and token:
            return await self.verify(token)
        raise Unauthorized("connection_init needs 'Authorization: Bearer <JWT>' or 'token'")

    async def verify(self, token: str) -> dict[str, Any]:
        """Decode and check a token; raise InvalidToken when it is invalid or expired."""
        claims = await self._decode(token)
        for name in _NUMERIC_DATES:
            value = claims.get(name)
            # RFC 7519 NumericDate is a JSON number; PyJWT would take "1900000000" too.
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not numeric:
                raise InvalidToken(
                    f"the bearer token is invalid: its '{name}' claim must be a number, "
                    f"not {type(value).__name__}"
                )
        return claims

    async def _decode(self, token: str) -> dict[str, Any]:
        options: Any = {"require": ["exp"]}
        try:
            if self._jwks is not None:
                # PyJWKClient fetches over blocking urllib (then caches): keep it off the loop.
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                return jwt.decode(
                    token,
                    key.key,
                    algorithms=_JWKS_ALGORITHMS,
                    audience=self.settings.jwt_audience,
                    issuer=self.settings.jwt_issuer,
                    options=options,
                )
            return jwt.decode(
                token,
                self.settings.jwt_secret or "",
                algorithms=["HS256"],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the bearer token has expired") from None
        except jwt.PyJWKClientError as exc:
            raise InvalidToken(f"the bearer token's key cannot be found: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the bearer token is invalid: {exc}") from None


def scope_of(claims: dict[str, Any]) -> str:
    """What separates the data one caller may see from another's (for sharing results).

    Every authenticated caller sees the same data today; the `scope` claim is part of the
    key anyway so that callers of different scopes never share a live query or a cache entry.
    """
    scope = claims.get("scope", "")
    return scope if isinstance(scope, str) else " ".join(map(str, scope))


def origin_allowed(settings: Settings, origin: str | None, host: str | None) -> bool:
    """WebSocket origin check: same origin, a configured origin, or no Origin (non-browser)."""
    if origin is None:
        return True
    if "*" in settings.cors_origins or origin in settings.cors_origins:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()
