"""Functions in processes of their own (infra/localcloud/container.py): the SQS workers of
`make dev` run in child processes, with their roles enforced there, and never outlive the
local cloud."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from infra.localcloud import LocalCloud
from infra.localcloud.container import ProcessRuntime
from tests.conftest import CLOUD_ENV, JWT_SECRET, ROOT, make_user, reset_caches, start_serve


def _ready(http: httpx.Client, memory_id: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        status = http.get(f"/v1/memories/{memory_id}").json()["status"]
        if status == "ready" or time.monotonic() > deadline:
            return str(status)
        time.sleep(0.1)


def _children(pid: int) -> set[int]:
    """The function processes of process `pid`, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"infra.localcloud.container" in command:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is gone too
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_the_workers_run_the_pipeline_in_their_own_processes() -> None:
    with LocalCloud(
        ROOT / "template.yaml",
        port=0,
        env_overrides=CLOUD_ENV,
        schedules=False,
        stack_name="memlayer-processes",
        processes="workers",
    ) as cloud:
        reset_caches()
        try:
            user = make_user(cloud)
            ids = []
            for i in range(6):
                created = user.http.post("/v1/memories", json={"content": f"note {i} on ports"})
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])
            assert [_ready(user.http, i) for i in ids] == ["ready"] * 6
            found = user.http.post("/v1/search", json={"query": "note 3 on ports"}).json()
            assert ids[3] in [hit["memory"]["id"] for hit in found["items"]]
            for function in ("AnalyzeFunction", "EmbedFunction"):
                runtime = cloud.runtime(function)
                assert isinstance(runtime, ProcessRuntime)
                assert runtime.invocations > 0
            assert not isinstance(cloud.runtime("MemoriesFunction"), ProcessRuntime)
            children = _children(os.getpid())
            assert len(children) >= 2
        finally:
            reset_caches()
    # stop() ends them
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def _without_analyze_policies(tmp_path: Path) -> Path:
    """template.yaml with the analyze worker's Policies removed (paths made absolute)."""
    text = (ROOT / "template.yaml").read_text()
    text = re.sub(r"(CodeUri|ContentUri): (\S+)", lambda m: f"{m[1]}: {ROOT / m[2]}", text)
    start = text.index("\n  AnalyzeFunction:\n")
    end = re.compile(r"\n  \S").search(text, start + 1)
    assert end is not None
    section = re.sub(r"\n      Policies:\n(?:        .*\n)+", "\n", text[start : end.start()])
    assert "Policies:" not in section
    path = tmp_path / "template.yaml"
    path.write_text(text[:start] + section + text[end.start() :])
    return path


def test_a_worker_in_its_own_process_has_only_its_role(tmp_path: Path) -> None:
    """Without its policies, the analyze worker's calls are refused in its process (the
    memory never gets past analysis), and the refusals are reported to the local cloud as
    in-process ones are."""
    with LocalCloud(
        _without_analyze_policies(tmp_path),
        port=0,
        env_overrides=CLOUD_ENV,
        stack_name="memlayer-processes-iam",
        schedules=False,
        processes="workers",
    ) as local:
        reset_caches()
        try:
            user = make_user(local)
            created = user.http.post("/v1/memories", json={"content": "never analyzed"})
            assert created.status_code == 201, created.text  # the API function has its role
            role = local.roles["AnalyzeFunction"]
            deadline = time.monotonic() + 30
            while not role.denied and time.monotonic() < deadline:
                time.sleep(0.1)
            status = user.http.get(f"/v1/memories/{created.json()['id']}").json()["status"]
        finally:
            reset_caches()
    assert role.denied
    assert {action.split(":")[0] for action, _ in role.denied} <= {"secretsmanager", "dynamodb"}
    assert status != "ready"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_no_function_process_outlives_serve(tmp_path: Path, stop: signal.Signals) -> None:
    from memlayer.auth.jwt import mint_dev_token

    headers = {"Authorization": f"Bearer {mint_dev_token(JWT_SECRET, 'processes-user')}"}
    process, base = start_serve(tmp_path / "state")
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            created = http.post("/v1/memories", json={"content": "worked on elsewhere"})
            assert created.status_code == 201, created.text
            assert _ready(http, created.json()["id"]) == "ready"
        children = _children(process.pid)
        assert len(children) >= 2  # analyze and embed
        started = time.monotonic()
        process.send_signal(stop)
        process.wait(timeout=15)
        assert time.monotonic() - started < 10
        # SIGTERM: serve stopped them before it exited; SIGKILL: they notice it is gone
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in children)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
