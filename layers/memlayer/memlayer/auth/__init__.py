"""Who is calling: a Principal, from a Supabase JWT (verified here, `auth/jwt.py`) or a memlayer
API key (`mlk_…`, resolved by `services/api_keys.py`, which needs the store).

The FastAPI dependencies that demand a credential (`current_user`, `writer`, `admin`) are in
`memlayer/web.py`, above the services they call."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from memlayer import secrets
from memlayer.settings import ConfigurationError, get_settings

if TYPE_CHECKING:
    from memlayer.auth.jwt import JwtVerifier

API_KEY_PREFIX = "mlk_"


@dataclass(frozen=True)
class Principal:
    user_id: str
    scopes: frozenset[str]
    is_admin: bool = False
    via: str = "jwt"
    key_id: str | None = None
    expires_at: float | None = None  # a token's `exp`; API keys live until revoked


def _verifier() -> JwtVerifier:
    # The secret is cached by memlayer.secrets; a rotated one gets a new verifier.
    secret = secrets.value("supabase_jwt_secret")
    return _verifier_for(secret.get_secret_value() if secret else None)


@lru_cache(maxsize=2)
def _verifier_for(secret: str | None) -> JwtVerifier:
    # lazy: pyjwt + cryptography (~60 ms) stay out of init; health never verifies a token
    from memlayer.auth.jwt import JwtVerifier

    settings = get_settings()
    if settings.environment in ("dev", "prod") and not (secret or settings.supabase_jwks_url):
        raise ConfigurationError("no JWT secret (SUPABASE_JWT_SECRET_ARN) or SUPABASE_JWKS_URL")
    return JwtVerifier.from_settings(settings, secret=secret)


async def verify_jwt(token: str) -> Principal:
    """A Supabase access token's user (read and write scopes); `Unauthorized` otherwise."""
    verified = await _verifier().verify(token)
    return Principal(
        user_id=verified.subject,
        scopes=frozenset({"read", "write"}),
        is_admin=verified.is_admin,
        expires_at=float(verified.claims["exp"]),
    )
