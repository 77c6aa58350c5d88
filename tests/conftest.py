"""Shared fixtures. Integration tests run against the local cloud (moto + the template's
resources + the real function handlers behind a loopback HTTP server), one per xdist worker;
tests isolate themselves by using fresh user ids."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "memlayer-test-secret-0123456789abcdef"

CLOUD_ENV: dict[str, str | None] = {
    "SUPABASE_JWT_SECRET": JWT_SECRET,
    "SUPABASE_JWKS_URL": None,
    "ANTHROPIC_API_KEY": None,
    "OPENAI_API_KEY": None,
    "EMBEDDINGS_PROVIDER": "hash",
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_PER_IP_PER_MIN": "0",
    "CAPTURE_PAIR_WINDOW_SECONDS": "2",
    "FETCH_ALLOW_HOSTS": "127.0.0.1",
    "POWERTOOLS_METRICS_NAMESPACE": "memlayer-test",
}


def reset_caches() -> None:
    """Settings, clients and the store are built once per process; tests that change the
    environment rebuild them."""
    from memlayer import aws
    from memlayer.observability import get_metrics
    from memlayer.settings import get_settings
    from memlayer.storage import get_store

    get_settings.cache_clear()
    get_metrics.cache_clear()
    get_store.cache_clear()
    aws.client.cache_clear()


@pytest.fixture(scope="session")
def cloud() -> Iterator[object]:
    from infra.localcloud import LocalCloud

    with LocalCloud(ROOT / "template.yaml", port=0, env_overrides=CLOUD_ENV) as local:
        reset_caches()
        yield local
    reset_caches()


@dataclass
class User:
    user_id: str
    token: str
    http: httpx.Client


def make_user(cloud: object, *, admin: bool = False, user_id: str | None = None) -> User:
    from memlayer.auth.jwt import mint_dev_token
    from memlayer.ids import new_id

    uid = user_id or f"user-{new_id()}"
    token = mint_dev_token(JWT_SECRET, uid, admin=admin)
    http = httpx.Client(
        base_url=cloud.base_url,  # type: ignore[attr-defined]
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return User(uid, token, http)


@pytest.fixture
def user(cloud: object) -> Iterator[User]:
    made = make_user(cloud)
    yield made
    made.http.close()


@pytest.fixture
def other_user(cloud: object) -> Iterator[User]:
    made = make_user(cloud)
    yield made
    made.http.close()


def queue_bodies(cloud: Any, logical_id: str) -> list[str]:
    """Every body in a queue, left in place."""
    sqs, url = cloud.boto3_client("sqs"), cloud.queue_url(logical_id)
    bodies, handles = [], []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
    ).get("Messages"):
        bodies += [m["Body"] for m in messages]
        handles += [m["ReceiptHandle"] for m in messages]
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return bodies


def remove_messages_of(cloud: Any, logical_id: str, text: str) -> None:
    """Deletes the messages whose body contains `text`; the others stay."""
    sqs, url = cloud.boto3_client("sqs"), cloud.queue_url(logical_id)
    others = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
    ).get("Messages"):
        for m in messages:
            if text in m["Body"]:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            else:
                others.append(m["ReceiptHandle"])
    for handle in others:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
