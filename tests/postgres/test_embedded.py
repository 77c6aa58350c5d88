"""The embedded Postgres started for tests, benches and `make dev` never outlives its owner."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OWNER = """
import sys, time
from pathlib import Path
from infra.supabase.embedded import embedded_postgres

with embedded_postgres(Path(sys.argv[1]), keep_data=sys.argv[2] == "keep") as url:
    print(url, flush=True)
    time.sleep(600)
"""


def _killed_owner_leaves_no_server(keep: bool) -> None:
    data = Path(tempfile.mkdtemp(prefix="memlayer-test-watchdog-")) / "data"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data), "keep" if keep else "delete"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().startswith("postgresql://")
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, 0)  # running
        owner.send_signal(signal.SIGKILL)  # no cleanup of its own
        owner.wait(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(postmaster, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(postmaster, signal.SIGKILL)
            raise AssertionError("the server outlived its owner")
        # kept data stays usable (make dev's state); a test's data goes
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and data.exists() != keep:
            time.sleep(0.2)
        assert data.exists() == keep
        if keep:
            assert (data / "PG_VERSION").is_file() and not (data / "postmaster.pid").exists()
    finally:
        owner.kill()
        subprocess.run(["rm", "-rf", str(data.parent)], check=False)


def test_a_killed_owner_takes_its_test_server_and_data_with_it() -> None:
    _killed_owner_leaves_no_server(keep=False)


def test_a_killed_make_dev_stops_its_server_and_keeps_the_data() -> None:
    _killed_owner_leaves_no_server(keep=True)


def test_make_dev_stops_its_database_when_it_stops() -> None:
    """`serve` (what make dev runs) on Postgres, stopped with SIGTERM: the database is down by
    the time the process has exited (it ended with os._exit inside the database's context, so
    only the watchdog stopped the server, later, and under a restarted stack)."""
    state = Path(tempfile.mkdtemp(prefix="memlayer-test-serve-"))
    command = [sys.executable, "-m", "infra.localcloud", "serve", "--port", "0"]
    serve = subprocess.Popen(
        [
            *command,
            "--no-schedules",
            "--state-dir",
            str(state),
            "--env",
            "STORAGE_BACKEND=supabase",
        ],
        cwd=ROOT,
        env={**os.environ, "SUPABASE_JWT_SECRET": "test-secret-for-the-serve-test"},  # as make dev
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    postmaster = 0
    try:
        assert serve.stdout is not None
        for line in serve.stdout:  # up once it prints its summary
            if line.startswith("local cloud for"):
                break
        pid_file = state / "postgres" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(30) == 0
        # stopped before the exit, not later by the watchdog: the server removes its pid file
        # as it shuts down, and the process ends moments after
        assert not pid_file.exists()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(postmaster, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the database outlived make dev")
    finally:
        serve.kill()
        if postmaster:  # a failed run leaves no server behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(state)], check=False)
