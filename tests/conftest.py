"""Shared fixtures. Integration tests run against the local cloud (moto + the template's
resources + the real function handlers behind a loopback HTTP server), one per xdist worker;
tests isolate themselves by using fresh user ids."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
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
    from memlayer import aws, secrets
    from memlayer.observability import get_metrics
    from memlayer.settings import get_settings
    from memlayer.storage import get_search_index, get_store

    get_settings.cache_clear()
    get_metrics.cache_clear()
    get_store.cache_clear()
    get_search_index.cache_clear()
    aws.client.cache_clear()
    secrets._provider.cache_clear()  # its boto3 client points at the previous cloud


# `STORAGE_BACKEND=supabase pytest tests/integration` runs the same flows on Postgres.
STORAGE_BACKEND = os.environ.get("STORAGE_BACKEND", "dynamodb")
on_dynamodb_only = pytest.mark.skipif(
    STORAGE_BACKEND != "dynamodb", reason="inspects the DynamoDB backend's internals"
)


@pytest.fixture(scope="session")
def cloud(request: pytest.FixtureRequest) -> Iterator[object]:
    from infra.localcloud import LocalCloud

    overrides = dict(CLOUD_ENV)
    if STORAGE_BACKEND == "supabase":
        overrides["STORAGE_BACKEND"] = "supabase"
        overrides["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    with LocalCloud(ROOT / "template.yaml", port=0, env_overrides=overrides) as local:
        reset_caches()
        yield local
    reset_caches()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One embedded Postgres (18 + pgvector) per test session (per xdist worker), migrated
    with infra/supabase/migrations; tests isolate themselves by using fresh user ids.

    Not under pytest's basetemp: every new pytest session on the machine resets that folder
    to mode 0700, which would lock out the server's own system user mid-run."""
    import tempfile

    from infra.supabase.embedded import embedded_postgres

    data = Path(tempfile.mkdtemp(prefix="memlayer-test-postgres-"))
    with embedded_postgres(data / "data", keep_data=False) as url:
        yield url
    data.rmdir()


def postgres_rows(sql: str, *args: Any) -> list[Any]:
    """Rows of a query on the database the local cloud runs on (STORAGE_BACKEND=supabase)."""
    import asyncio

    import asyncpg

    from memlayer.settings import get_settings

    url = get_settings().database_url
    assert url is not None

    async def read() -> list[Any]:
        conn = await asyncpg.connect(url.get_secret_value(), statement_cache_size=0)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(read())


@contextlib.contextmanager
def postgres_refusing(
    user_id: str, event: str, *, sqlstate: str = "40001", times: int | None = None
) -> Iterator[Callable[[], int]]:
    """While inside, the database refuses `event` ("insert", "update of embedding", …) on one
    user's memory rows: a trigger raises `sqlstate` (by default a serialization failure, which
    a client may retry), every time or for the first `times` rows only. Yields a function
    that tells how often the trigger fired (a sequence: it counts rolled-back attempts too)."""
    limit = "null" if times is None else str(times)
    postgres_rows("create sequence memlayer.test_refuse_fired")
    # security definer: it runs as the requests' role (authenticated), which may not use
    # the sequence
    postgres_rows(
        "create function memlayer.test_refuse() returns trigger language plpgsql"
        " security definer as $$ begin"
        f" if nextval('memlayer.test_refuse_fired') <= coalesce({limit}, 2^62) then"
        f" raise exception 'refused (test fault)' using errcode = '{sqlstate}'; end if;"
        " return new; end $$"
    )
    postgres_rows(
        f"create trigger test_refuse before {event} on memlayer.memories for each row"
        f" when (new.user_id = '{user_id}') execute function memlayer.test_refuse()"
    )

    def fired() -> int:
        row = postgres_rows("select last_value, is_called from memlayer.test_refuse_fired")[0]
        return int(row["last_value"]) if row["is_called"] else 0

    try:
        yield fired
    finally:
        postgres_rows("drop trigger test_refuse on memlayer.memories")
        postgres_rows("drop function memlayer.test_refuse()")
        postgres_rows("drop sequence memlayer.test_refuse_fired")


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


def start_serve(state_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """`python -m infra.localcloud serve` as `make dev` runs it (its default --processes),
    on `state_dir` with the test environment; returns the process and its base URL once it
    is up. Its log goes to serve.log beside the state directory (a pipe nobody reads would
    stall it once full), and into the failure when it does not come up."""
    command = [sys.executable, "-m", "infra.localcloud", "serve", "--port", "0", "--json"]
    command += ["--no-schedules", "--state-dir", str(state_dir)]
    for name, value in CLOUD_ENV.items():
        command += ["--env", f"{name}={value or ''}"]
    log_path = state_dir.parent / "serve.log"
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "SUPABASE_JWT_SECRET": JWT_SECRET},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, log_path.read_text()[-4000:] or "serve exited"
    return process, json.loads(line)["base_url"]
