"""The JWT secret, the provider API keys, the database URL and the Supabase service-role key
(data access).

Deployed, they live in Secrets Manager: a function gets only the ARNs of the secrets it needs
(`SUPABASE_JWT_SECRET_ARN`, ...) and the permission to read those. The value is read with
Powertools Parameters at first use and cached for `MAX_AGE_SECONDS`, so a warm container does
not call Secrets Manager per request, and a rotated key is picked up within that time. A value
set directly (`SUPABASE_JWT_SECRET`, for a process without the local cloud) wins.

The first read happens where the secret is first needed; after that, `refresh(function_name)`
(run by the handler wrappers before the event loop) renews expired values, so a request does
not wait on Secrets Manager inside the loop. What was read is kept per function: on AWS a
process is one function, but the local cloud runs every function in one process, each with its
own role, and one function must not renew (with its role) the secrets another one reads."""

from __future__ import annotations

import threading
from collections import defaultdict
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Literal

from pydantic import SecretStr

from memlayer import aws
from memlayer.observability import logger
from memlayer.settings import Settings, get_settings

SecretName = Literal[
    "supabase_jwt_secret",
    "anthropic_api_key",
    "openai_api_key",
    "database_url",
    "supabase_service_role_key",
]
MAX_AGE_SECONDS = 300

_lock = threading.Lock()
_used: defaultdict[str, set[SecretName]] = defaultdict(set)  # by function name
# The function the current invocation runs (set by `refresh`; copied into its tasks/threads).
_function: ContextVar[str] = ContextVar("memlayer_secrets_function", default="")


@lru_cache(maxsize=1)
def _provider() -> Any:
    # Lazy: only functions that hold a secret ARN import Powertools Parameters.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=aws.client("secretsmanager"))


def configured(name: SecretName, settings: Settings | None = None) -> bool:
    """Whether the secret is set, without reading it."""
    settings = settings or get_settings()
    return getattr(settings, name) is not None or bool(getattr(settings, f"{name}_arn"))


def value(name: SecretName, settings: Settings | None = None) -> SecretStr | None:
    settings = settings or get_settings()
    direct: SecretStr | None = getattr(settings, name)
    if direct is not None:
        return direct
    arn: str | None = getattr(settings, f"{name}_arn")
    if not arn:
        return None
    with _lock:  # one fetch when several threads want it first
        text = _provider().get(arn, max_age=MAX_AGE_SECONDS)
        _used[_function.get()].add(name)
    return SecretStr(str(text)) if text else None


def refresh(function_name: str) -> None:
    """At the start of an invocation of `function_name` (the Lambda context's): renews the
    secrets it has read once they are older than MAX_AGE_SECONDS, and notes that the
    invocation's reads are its. Best effort: a failure is logged here and fails the request
    that needs the secret, which then answers in the API's error shape."""
    _function.set(function_name)
    for name in list(_used[function_name]):
        try:
            value(name)
        except Exception as exc:
            logger.warning("cannot read secret", secret=name, error=f"{type(exc).__name__}: {exc}")
