"""HTTP-level fakes of the AI providers, served on loopback, for the real SDK clients.

Each fake answers from a script (one step per request: "ok", "429", "500", "malformed",
"sleep") and records every request body, so tests can assert what left for the provider."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANALYSIS = {
    "title": "Fake analysis title",
    "description": "A description written by the fake provider.",
    "tags": ["fake-tag", "testing"],
    "category": "technology",
    "sentiment": "neutral",
    "key_topics": ["fakes", "tests"],
    "confidence": 0.9,
}


class FakeAnthropic:
    def __init__(self, script: list[str] | None = None, *, chat_text: str = "ok") -> None:
        self.script = list(script or [])
        self.chat_text = chat_text
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._lock = threading.Lock()

    def next_step(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else "ok"

    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        step = self.next_step()
        if step == "sleep":
            time.sleep(3)
        if step in ("429", "500"):
            kind = "rate_limit_error" if step == "429" else "api_error"
            return (
                int(step),
                {"type": "error", "error": {"type": kind, "message": step}},
                {"retry-after-ms": "1"},
            )
        if "tools" in body:
            tool_input: Any = ANALYSIS if step != "malformed" else {"title": 42, "tags": "x"}
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": body["tools"][0]["name"],
                    "input": tool_input,
                }
            ]
        else:
            content = [{"type": "text", "text": self.chat_text}]
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": content,
            "stop_reason": "tool_use" if "tools" in body else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 321, "output_tokens": 87},
        }
        return 200, message, {}


@contextmanager
def serve(fake: FakeAnthropic) -> Iterator[FakeAnthropic]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            fake.requests.append(body)
            status, payload, headers = fake.respond(body)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
