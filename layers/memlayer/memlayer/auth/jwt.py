"""Verify Supabase access tokens.

HS256 tokens are checked against the project's shared JWT secret; RS256/ES256 tokens against the
key named by the header's `kid` in the project's JWKS (fetched with httpx, cached, refetched at
most once per `min_refetch_interval_seconds` when an unknown `kid` shows up). The algorithm is
taken from the token only to pick *which* configured key to use, and each key is only ever used
with its own algorithm, so algorithm-confusion tricks fail. Every failure raises
`memlayer.errors.Unauthorized` with a short detail; the reason stays in the logs.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from memlayer.errors import Unauthorized
from memlayer.observability import logger

if TYPE_CHECKING:
    from memlayer.settings import Settings


ALLOWED_ALGORITHMS = frozenset({"HS256", "RS256", "ES256"})
_ASYMMETRIC_KTY = {"RS256": "RSA", "ES256": "EC"}
_MAX_TOKEN_CHARS = 16_384
_MAX_JWKS_BYTES = 256 * 1024
_MIN_RSA_BITS = 2048
_FAILURE_BACKOFF_SECONDS = 5.0
_STALE_IF_ERROR_SECONDS = 3_600.0
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    claims: dict[str, Any] = field(repr=False)
    is_admin: bool = False


@dataclass(frozen=True)
class _SigningKey:
    alg: str
    key: Any


class _JwksError(Exception):
    pass


_TIME_CLAIMS = ("exp", "nbf", "iat")


class JwtVerifier:
    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks_url: str | None = None,
        audience: str = "authenticated",
        issuer: str | None = None,
        leeway_seconds: float = 30,
        jwks_cache_seconds: float = 600,
        http_timeout_seconds: float = 5.0,
        admin_role_claim: str = "app_metadata.role",
        admin_role_value: str = "admin",
        min_refetch_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # An empty secret would make HMAC forgeable by anyone: treat it as "not configured".
        self._secret = secret or None
        self._jwks_url = jwks_url or None
        self._audience = audience
        self._issuer = issuer or None
        self._leeway = max(0.0, float(leeway_seconds))
        self._cache_seconds = max(0.0, float(jwks_cache_seconds))
        self._http_timeout = float(http_timeout_seconds)
        self._admin_path = tuple(p for p in admin_role_claim.split(".") if p)
        self._admin_value = admin_role_value
        self._min_refetch = max(0.0, float(min_refetch_interval_seconds))
        self._clock = clock

        self._keys: dict[str, _SigningKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_fetch_failed = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

        if self._admin_path[:1] == ("user_metadata",):
            logger.warning(
                "admin_role_claim is under user_metadata, which users can edit themselves",
                admin_role_claim=admin_role_claim,
            )
        if not (self._secret or self._jwks_url):
            logger.warning("no JWT secret or JWKS URL configured; every token will be rejected")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> JwtVerifier:
        secret = settings.supabase_jwt_secret
        params: dict[str, Any] = {
            "secret": secret.get_secret_value() if secret is not None else None,
            "jwks_url": settings.supabase_jwks_url,
            "audience": settings.jwt_audience,
            "issuer": settings.jwt_issuer,
            "leeway_seconds": settings.jwt_leeway_seconds,
            "jwks_cache_seconds": settings.jwks_cache_seconds,
            "admin_role_claim": settings.admin_role_claim,
            "admin_role_value": settings.admin_role_value,
        }
        params.update(overrides)
        return cls(**params)

    async def verify(self, token: str) -> VerifiedToken:
        if not isinstance(token, str) or not token:
            raise Unauthorized("missing token")
        header = _parse_header(token)

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            _reject_debug("algorithm %r not allowed", alg)
            raise Unauthorized("unsupported token algorithm")

        if alg == "HS256":
            if self._secret is None:
                _reject_debug("HS256 token but no shared secret configured")
                raise Unauthorized("unsupported token algorithm")
            key: Any = self._secret
        else:
            if self._jwks_url is None:
                _reject_debug("%s token but no JWKS URL configured", alg)
                raise Unauthorized("unsupported token algorithm")
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise Unauthorized("unknown signing key")
            signing_key = await self._signing_key(kid)
            if signing_key is None:
                raise Unauthorized("unknown signing key")
            if signing_key.alg != alg:
                _reject_debug("kid %r is a %s key, token says %s", kid, signing_key.alg, alg)
                raise Unauthorized("invalid token")
            key = signing_key.key

        claims = self._decode(token, key, alg)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise Unauthorized("token missing subject")
        return VerifiedToken(subject=subject, claims=claims, is_admin=self._is_admin(claims))

    # -- claims ---------------------------------------------------------------------------------

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        required = ["exp", "sub", "aud"] + (["iss"] if self._issuer else [])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": required, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("token not yet valid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token missing {exc.claim} claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("invalid token audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("invalid token issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("invalid token signature") from exc
        except jwt.InvalidKeyError as exc:
            logger.error("configured JWT key rejected by its verifier", alg=alg, error=str(exc))
            raise Unauthorized("invalid token") from exc
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            _reject_debug("token rejected: %s", exc)
            raise Unauthorized("invalid token") from exc
        # RFC 7519 NumericDate: PyJWT would also take "9999999999" (a string) for a time.
        for claim in _TIME_CLAIMS:
            value = claims.get(claim)
            if claim in claims and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise Unauthorized(f"token {claim} claim must be a number")
        # Belt and braces: older PyJWT releases matched `iss` by substring.
        if self._issuer is not None and claims.get("iss") != self._issuer:
            raise Unauthorized("invalid token issuer")
        return claims

    def _is_admin(self, claims: Mapping[str, Any]) -> bool:
        if not self._admin_path:
            return False
        node: Any = claims
        for part in self._admin_path:
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        if isinstance(node, str):
            return node == self._admin_value
        if isinstance(node, list):
            return any(isinstance(v, str) and v == self._admin_value for v in node)
        return False

    # -- JWKS -----------------------------------------------------------------------------------

    def _get_lock(self) -> asyncio.Lock:
        # asyncio.Lock binds to the loop it first waits on; Lambda handlers may run a fresh loop
        # per invocation, so keep one lock per running loop.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    def _expired(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self._cache_seconds

    def _may_attempt(self, now: float, min_gap: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= min_gap

    def _lookup(self, kid: str, now: float) -> _SigningKey | None:
        if self._fetched_at is None:
            return None
        if now - self._fetched_at >= self._cache_seconds + _STALE_IF_ERROR_SECONDS:
            return None
        return self._keys.get(kid)

    async def _signing_key(self, kid: str) -> _SigningKey | None:
        now = self._clock()
        if not self._expired(now) and kid in self._keys:
            return self._keys[kid]

        async with self._get_lock():
            now = self._clock()
            refreshed = False
            if self._expired(now):
                backoff = _FAILURE_BACKOFF_SECONDS if self._last_fetch_failed else 0.0
                if self._may_attempt(now, min(backoff, self._min_refetch)):
                    await self._refresh()
                    refreshed = True
            found = self._lookup(kid, self._clock())
            if found is None and not refreshed and self._may_attempt(now, self._min_refetch):
                # Unknown kid: maybe the keys rotated. Rate-limited so forged kids can't force
                # a refetch per request.
                await self._refresh()
                found = self._lookup(kid, self._clock())
            if found is None and self._fetched_at is None:
                raise Unauthorized("token verification unavailable")
            return found

    async def _refresh(self) -> None:
        assert self._jwks_url is not None
        self._attempted_at = self._clock()
        try:
            keys = await asyncio.wait_for(self._fetch(self._jwks_url), self._http_timeout)
        except Exception as exc:  # anything here must become a 401, never a 500
            self._last_fetch_failed = True
            logger.warning(
                "JWKS fetch failed",
                url=self._jwks_url,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=not isinstance(exc, httpx.HTTPError | _JwksError | TimeoutError),
            )
            return
        self._keys = keys
        self._fetched_at = self._attempted_at
        self._last_fetch_failed = False
        logger.info("fetched JWKS signing keys", keys=len(keys), url=self._jwks_url)

    async def _fetch(self, url: str) -> dict[str, _SigningKey]:
        async with (
            httpx.AsyncClient(
                timeout=self._http_timeout,
                follow_redirects=False,
                headers={"Accept": "application/json"},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise _JwksError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    raise _JwksError("response too large")
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise _JwksError("response is not JSON") from exc
        return _parse_jwks(document)


def _parse_header(token: str) -> dict[str, Any]:
    if len(token) > _MAX_TOKEN_CHARS:
        raise Unauthorized("malformed token")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise Unauthorized("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise Unauthorized("malformed token") from exc
    if not isinstance(header, dict):
        raise Unauthorized("malformed token")
    return header


def _parse_jwks(document: Any) -> dict[str, _SigningKey]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _JwksError("not a JWK set")
    keys: dict[str, _SigningKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid, kty = jwk.get("kid"), jwk.get("kty")
        if not isinstance(kid, str) or not kid or kid in keys:
            continue
        if jwk.get("use") not in (None, "sig"):
            continue
        # Only asymmetric keys are accepted from a JWKS; HS256 only ever uses the shared secret.
        alg = next((a for a, t in _ASYMMETRIC_KTY.items() if t == kty), None)
        if alg is None or jwk.get("alg") not in (None, alg):
            continue
        try:
            key = _load_public_key(jwk, alg)
        except Exception as exc:
            logger.warning("skipping an unusable JWKS key", kid=kid, error=str(exc))
            continue
        keys[kid] = _SigningKey(alg=alg, key=key)
    if not keys:
        raise _JwksError("no usable signing keys")
    return keys


def _load_public_key(jwk: dict[str, Any], alg: str) -> Any:
    if alg == "RS256":
        rsa_key = RSAAlgorithm.from_jwk(jwk)
        if isinstance(rsa_key, rsa.RSAPrivateKey):
            rsa_key = rsa_key.public_key()
        if rsa_key.key_size < _MIN_RSA_BITS:
            raise _JwksError("RSA key too small")
        return rsa_key
    if jwk.get("crv") != "P-256":
        raise _JwksError("ES256 needs a P-256 key")
    ec_key = ECAlgorithm.from_jwk(jwk)
    if isinstance(ec_key, ec.EllipticCurvePrivateKey):
        ec_key = ec_key.public_key()
    if not isinstance(ec_key.curve, ec.SECP256R1):
        raise _JwksError("ES256 needs a P-256 key")
    return ec_key


def _reject_debug(message: str, *args: Any) -> None:
    logger.debug("JWT rejected", reason=message % args if args else message)


def mint_dev_token(
    secret: str,
    user_id: str,
    *,
    admin: bool = False,
    ttl_seconds: int = 86400,
    audience: str = "authenticated",
    role_claim: str = "app_metadata.role",
    issuer: str | None = None,
) -> str:
    """An HS256 token shaped like a Supabase access token, for local development and tests."""
    if not secret:
        raise ValueError("secret must be non-empty")
    if not user_id:
        raise ValueError("user_id must be non-empty")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "aud": audience,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    if admin:
        path = [p for p in role_claim.split(".") if p]
        if not path:
            raise ValueError("role_claim must name a claim")
        node = claims
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = "admin"
    return jwt.encode(claims, secret, algorithm="HS256")
