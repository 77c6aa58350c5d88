"""Deployed, the database URL and the Supabase service-role key are Secrets Manager secrets
read by ARN (template.yaml gives each function the ARNs and the permission): the store and
the Auth admin client read them through memlayer.secrets from the local cloud's Secrets
Manager, never from a plain environment variable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from memlayer.ids import new_id
from tests.conftest import reset_caches


@pytest.fixture
def secret_env(cloud: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("DATABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    monkeypatch.undo()
    reset_caches()


def _secret(value: str) -> str:
    from memlayer import aws

    client = aws.client("secretsmanager")
    arn: str = client.create_secret(Name=f"test-{new_id()}", SecretString=value)["ARN"]
    return arn


def test_the_store_reads_the_database_url_from_its_secret(
    secret_env: pytest.MonkeyPatch, postgres_url: str
) -> None:
    from memlayer.storage.postgres import PostgresStore

    arn = _secret(postgres_url)
    secret_env.setenv("STORAGE_BACKEND", "supabase")
    secret_env.setenv("DATABASE_URL_ARN", arn)
    reset_caches()
    store = PostgresStore.from_settings()
    assert store.dsn == postgres_url

    async def ping() -> bool:
        try:
            return await store.ping()
        finally:
            await store.close()

    assert asyncio.run(ping()) is True


def test_the_service_role_key_is_read_from_its_secret(secret_env: pytest.MonkeyPatch) -> None:
    from memlayer import secrets

    secret_env.setenv("SUPABASE_SERVICE_ROLE_KEY_ARN", _secret("service-role-key"))
    reset_caches()
    assert secrets.configured("supabase_service_role_key")
    key = secrets.value("supabase_service_role_key")
    assert key is not None and key.get_secret_value() == "service-role-key"
