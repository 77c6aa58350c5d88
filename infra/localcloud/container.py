"""A function in a process of its own, as Lambda runs each function in its own container.

`ProcessRuntime` has `FunctionRuntime`'s interface; the handler runs in a child process
(`main()`, started with the socket's fd) that the parent reaches over a socket pair. The
child imports the handler on its first invocation (the cold start) and then keeps it warm;
its AWS calls to moto go to the parent, where the data stays (and is saved with the rest of
the local state), through the parent's `transport.Relay` (a unix socket: loopback HTTP cost
the parent as much again as the call), checked against the function's role in the child as
they are in process; other endpoints (the WebSocket management API) are HTTP as before. So
the functions that run this way use the second core instead of waiting for the one
interpreter lock of the serve process.

The parent sends the child its `FunctionSpec` and role (pickled), then one JSON message per
invocation; the child runs invocations on threads (the parent decides how many run at once:
an SQS mapping's MaximumConcurrency, the HTTP API's clients) and answers each with the
handler's result or Lambda's error payload, plus the calls its role refused, so
`Role.denied` tells the same story in both modes.

The child ends when its socket closes: the parent stopping (SIGTERM, Ctrl-C: the child
ignores SIGINT and finishes what it runs), a code change under `--reload` (a new child
cold-starts on the next invocation), or the parent dying (a watchdog thread sees the parent
pid change), so no child outlives the local cloud.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .iam import Role
from .runtime import FunctionError
from .stack import FunctionSpec
from .transport import Relay

log = logging.getLogger("localcloud")

ROOT = Path(__file__).resolve().parents[2]
_CHILD_MAIN = "from infra.localcloud.container import main; main()"
# Invocations one child runs at once; the parent's callers bound it well below this.
CHILD_THREADS = 32


class _Child:
    """One running child process and the invocations waiting for its answers."""

    def __init__(
        self, spec: FunctionSpec, role: Role | None, relay: Relay, *, sys_path: list[str]
    ) -> None:
        self.spec = spec
        self.role = role
        parent_end, child_end = socket.socketpair()
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", _CHILD_MAIN, str(child_end.fileno())],
            cwd=ROOT,
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=sys.__stderr__.fileno() if sys.__stderr__ else subprocess.DEVNULL,
        )
        child_end.close()
        self._conn = Connection(parent_end.detach())
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._pending_lock = threading.Lock()
        self._next_id = 0
        self._retired = False
        self._closed = False
        init = {
            "spec": spec,
            "role": role,
            "sys_path": sys_path,
            "parent_pid": os.getpid(),
            "relay": (relay.address, relay.authkey),
            "log_level": logging.getLogger().level,
        }
        self._send(pickle.dumps(init))
        self._reader = threading.Thread(
            target=self._read, name=f"container-{spec.logical_id}", daemon=True
        )
        self._reader.start()

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self._conn.send_bytes(data)

    def call(self, event: Any, request_id: str | None) -> Any:
        future: Future[Any] = Future()
        with self._pending_lock:
            if self._closed:
                raise FunctionError(self.spec.logical_id, RuntimeError("the container has exited"))
            self._next_id += 1
            call_id = self._next_id
            self._pending[call_id] = future
        try:
            message = json.dumps({"id": call_id, "event": event, "request_id": request_id})
        except (TypeError, ValueError) as exc:
            self._forget(call_id)
            raise FunctionError(self.spec.logical_id, TypeError(f"event: {exc}")) from exc
        try:
            self._send(message.encode())
        except OSError as exc:
            self._forget(call_id)
            raise FunctionError(self.spec.logical_id, exc) from exc
        return future.result()

    def _forget(self, call_id: int) -> None:
        with self._pending_lock:
            self._pending.pop(call_id, None)
            self._close_if_done()

    def _read(self) -> None:
        while True:
            try:
                message = json.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                break
            if self.role is not None:
                self.role.denied += [tuple(pair) for pair in message.get("denied", ())]
            with self._pending_lock:
                future = self._pending.pop(message["id"], None)
            if future is None:
                continue
            if "error" in message:
                raised = RuntimeError(message["error"]["message"])
                error_type = message["error"]["type"]
                future.set_exception(
                    FunctionError(self.spec.logical_id, raised, error_type=error_type)
                )
            else:
                future.set_result(message["result"])
            with self._pending_lock:
                self._close_if_done()
        with self._pending_lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for future in pending.values():
            exited = RuntimeError(f"the process exited with {self.process.poll()}")
            future.set_exception(
                FunctionError(self.spec.logical_id, exited, error_type="Runtime.ExitError")
            )
        self._conn.close()

    def _close_if_done(self) -> None:
        """(with _pending_lock) A retired child with nothing running is told to exit."""
        if self._retired and not self._pending and not self._closed:
            self._closed = True
            # the child reads EOF, finishes and exits; our reader then ends too
            with socket.socket(fileno=os.dup(self._conn.fileno())) as end:
                end.shutdown(socket.SHUT_WR)

    def retire(self) -> None:
        """No new invocations; the child exits once the running ones have answered."""
        with self._pending_lock:
            self._retired = True
            self._close_if_done()

    def wait(self, timeout: float) -> None:
        try:
            self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            log.warning("%s: its process did not exit in time; killed", self.spec.logical_id)
            self.process.kill()
            self.process.wait()

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None


class ProcessRuntime:
    """`FunctionRuntime`'s interface, the handler in a child process (started on the first
    invocation, replaced after `unload()` or if it died)."""

    def __init__(self, spec: FunctionSpec, role: Role | None, relay: Relay) -> None:
        self.spec = spec
        self.role = role
        self.relay = relay
        self.invocations = 0
        self._child: _Child | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def _current(self) -> _Child:
        with self._lock:
            if self._stopped:
                raise FunctionError(self.spec.logical_id, RuntimeError("the cloud is stopping"))
            if self._child is None or not self._child.alive:
                started = time.monotonic()
                self._child = _Child(self.spec, self.role, self.relay, sys_path=list(sys.path))
                log.info(
                    "%s: started in process %d (%.0f ms)",
                    self.spec.logical_id,
                    self._child.process.pid,
                    (time.monotonic() - started) * 1000,
                )
            return self._child

    def load(self) -> None:
        self._current()

    def unload(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.retire()

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        self.invocations += 1
        return self._current().call(event, request_id)

    def stop(self) -> _Child | None:
        """No more invocations; returns the child to `wait()` for (it exits when done)."""
        with self._lock:
            self._stopped = True
            child, self._child = self._child, None
        if child is not None:
            child.retire()
        return child


# --------------------------------------------------------------------------- the child


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _serve(conn: Connection) -> None:
    from . import iam, transport
    from .runtime import FunctionRuntime

    init = pickle.loads(conn.recv_bytes())  # noqa: S301 - from our parent, over a socket pair
    spec: FunctionSpec = init["spec"]
    role: Role | None = init["role"]
    sys.path[:] = [p for p in init["sys_path"] if p not in sys.path] + sys.path
    logging.basicConfig(
        stream=sys.stderr,
        level=init["log_level"],
        format=f"%(asctime)s %(name)s[{spec.logical_id}] %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    threading.Thread(target=_watch_parent, args=(init["parent_pid"],), daemon=True).start()
    transport.install_relay(os.environ["AWS_ENDPOINT_URL"], *init["relay"])
    if role is not None:
        iam.install()
    runtime = FunctionRuntime(spec, role=role)
    send_lock = threading.Lock()
    reported = 0

    def handle(message: dict[str, Any]) -> None:
        nonlocal reported
        answer: dict[str, Any] = {"id": message["id"]}
        try:
            answer["result"] = runtime.invoke(message["event"], message.get("request_id"))
        except FunctionError as exc:
            answer["error"] = {"type": exc.error_type, "message": exc.error_message}
        with send_lock:
            if role is not None and len(role.denied) > reported:
                answer["denied"] = role.denied[reported:]
                reported = len(role.denied)
            conn.send_bytes(json.dumps(answer).encode())

    with ThreadPoolExecutor(CHILD_THREADS, thread_name_prefix="lambda") as pool:
        while True:
            try:
                message = json.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            pool.submit(handle, message)


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent stops us when it stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    try:
        _serve(conn)
    finally:
        # Interpreter teardown (botocore's and the handler's objects) only costs time here.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
