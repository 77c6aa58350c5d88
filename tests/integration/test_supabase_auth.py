"""Erasing an account deletes the Supabase Auth user through supabase-py's Auth admin client,
against an HTTP fake of the Auth admin API on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import make_user, reset_caches

SERVICE_KEY = "service-role-key-for-the-fake"


class FakeAuthAdmin:
    """`DELETE /auth/v1/admin/users/{id}` as Supabase Auth answers it: 200 for a known user,
    404 for an unknown one, 401 without the service-role key."""

    def __init__(self) -> None:
        self.users: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.url = ""


@pytest.fixture
def auth_admin() -> Iterator[FakeAuthAdmin]:
    fake = FakeAuthAdmin()

    class Handler(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            fake.requests.append(
                {"path": self.path, "auth": self.headers.get("authorization"), "body": body}
            )
            prefix = "/auth/v1/admin/users/"
            user_id = self.path.removeprefix(prefix)
            if self.headers.get("authorization") != f"Bearer {SERVICE_KEY}":
                self._answer(401, {"code": 401, "msg": "invalid JWT"})
            elif not self.path.startswith(prefix) or user_id not in fake.users:
                self._answer(
                    404, {"code": 404, "error_code": "user_not_found", "msg": "User not found"}
                )
            else:
                fake.users.discard(user_id)
                self._answer(200, {})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def test_erase_deletes_the_supabase_auth_user(
    cloud: object, monkeypatch: pytest.MonkeyPatch, auth_admin: FakeAuthAdmin
) -> None:
    from memlayer.services import account

    user = make_user(cloud, user_id=str(uuid.uuid4()))
    auth_admin.users.add(user.user_id)
    assert user.http.post("/v1/memories", json={"content": "to be erased"}).status_code == 201
    monkeypatch.setenv("SUPABASE_URL", auth_admin.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
    reset_caches()
    try:
        receipt = asyncio.run(account.erase(user.user_id))
        assert receipt.deleted["auth_user"] == 1 and receipt.deleted["memories"] == 1
        assert auth_admin.users == set()
        [call] = auth_admin.requests
        assert call["path"] == f"/auth/v1/admin/users/{user.user_id}"
        assert call["auth"] == f"Bearer {SERVICE_KEY}"
        assert call["body"] == {"should_soft_delete": False}
        # repeating the erase finds the Auth user gone and still completes
        again = asyncio.run(account.erase(user.user_id))
        assert again.deleted["auth_user"] == 1 and len(auth_admin.requests) == 2
        # a wrong key is an error: the erase fails and can be repeated
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "wrong")
        reset_caches()
        from supabase_auth.errors import AuthApiError

        with pytest.raises(AuthApiError):
            asyncio.run(account.erase(user.user_id))
    finally:
        monkeypatch.undo()
        reset_caches()
        user.http.close()


def test_without_supabase_auth_configured_nothing_is_called(
    cloud: object, auth_admin: FakeAuthAdmin
) -> None:
    from memlayer.services import account

    user = make_user(cloud, user_id=str(uuid.uuid4()))
    receipt = asyncio.run(account.erase(user.user_id))
    assert "auth_user" not in receipt.deleted
    assert auth_admin.requests == []
    user.http.close()
