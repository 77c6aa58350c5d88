"""Run a template's Lambda handlers in this process.

Each function's handler is imported lazily (first invocation) from its CodeUri by file path,
under a unique module name, because every function's entry point is called `app.py`.
Events and results go through a JSON round trip, as they do in Lambda, so a handler that
returns something Lambda cannot serialize fails here too.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from .iam import Role, acting_as
from .stack import FunctionSpec

log = logging.getLogger("localcloud")


class FunctionError(RuntimeError):
    """The handler raised; `error_type` / `error_message` mirror Lambda's error payload."""

    def __init__(
        self, function: str, error: BaseException, *, error_type: str | None = None
    ) -> None:
        self.function = function
        self.error = error
        self.error_type = error_type or type(error).__name__
        self.error_message = str(error)
        super().__init__(f"{function} failed: {self.error_type}: {self.error_message}")

    def payload(self) -> dict[str, Any]:
        return {"errorType": self.error_type, "errorMessage": self.error_message}


class LambdaContext:
    """What the Python Lambda runtime passes as `context`."""

    def __init__(self, spec: FunctionSpec, request_id: str | None = None) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = spec.log_group
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream_name = f"{day}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name}, request_id={self.aws_request_id})"


def _json_roundtrip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON serializable: {exc}") from exc


class FunctionRuntime:
    """One function: lazy handler import and invocation, with its role's permissions (init
    code included, as in Lambda); `role=None` leaves its AWS calls unchecked."""

    def __init__(
        self, spec: FunctionSpec, namespace: str = "localcloud_fn", role: Role | None = None
    ) -> None:
        self.spec = spec
        self.role = role
        self.module_name = f"{namespace}_{spec.logical_id}"
        self._handler: Any = None
        self._lock = threading.Lock()
        self.invocations = 0

    # ------------------------------------------------------------------ loading

    def unload(self) -> None:
        """Forget the handler; the next invocation imports it again (a cold start)."""
        with self._lock:
            self._handler = None
            sys.modules.pop(self.module_name, None)

    def load(self) -> Any:
        """Import the handler module (once) and return the handler callable."""
        if self._handler is not None:
            return self._handler
        with self._lock:
            if self._handler is None:
                with acting_as(self.role):
                    self._handler = self._import()
        return self._handler

    def _import(self) -> Any:
        spec = self.spec
        path = spec.handler_file()
        if not path.is_file():
            raise FileNotFoundError(
                f"{spec.logical_id}: handler {spec.handler!r} -> {path} does not exist"
            )
        code_dir = str(spec.code_dir)
        top = spec.handler.rpartition(".")[0].split(".")[0]
        stashed = self._stash_colliding_modules(Path(code_dir), skip={top})
        if stashed:
            log.debug("%s: shadowing modules %s", spec.logical_id, sorted(stashed))
        if code_dir in sys.path:
            sys.path.remove(code_dir)
        sys.path.insert(0, code_dir)
        started = time.monotonic()
        try:
            module_spec = importlib.util.spec_from_file_location(self.module_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[self.module_name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(self.module_name, None)
                raise
        finally:
            # Keep the code dir importable (lazy imports), but behind everything else.
            if code_dir in sys.path:
                sys.path.remove(code_dir)
            sys.path.append(code_dir)
        handler = getattr(module, spec.handler_attribute, None)
        if not callable(handler):
            raise AttributeError(f"{path} has no callable {spec.handler_attribute!r}")
        log.info(
            "%s: loaded %s (init %.0f ms)",
            spec.logical_id,
            path,
            (time.monotonic() - started) * 1000,
        )
        return handler

    @staticmethod
    def _stash_colliding_modules(code_dir: Path, skip: set[str]) -> dict[str, ModuleType]:
        """Unload other functions' same-named sibling modules so this one gets its own."""
        names = {p.stem for p in code_dir.glob("*.py")}
        names |= {p.name for p in code_dir.iterdir() if (p / "__init__.py").is_file()}
        stashed: dict[str, ModuleType] = {}
        for name in names - skip:
            module = sys.modules.get(name)
            if module is None:
                continue
            file = getattr(module, "__file__", None)
            if file and Path(file).resolve().is_relative_to(code_dir):
                continue
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                stashed[key] = sys.modules.pop(key)
        return stashed

    # ------------------------------------------------------------------ invoking

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        """Call the handler like Lambda would; raises FunctionError if it raises."""
        try:
            handler = self.load()
        except Exception as exc:
            log.exception("%s: cannot load handler %s", self.spec.logical_id, self.spec.handler)
            error_type = "Runtime.ImportModuleError"
            raise FunctionError(self.spec.logical_id, exc, error_type=error_type) from exc
        context = LambdaContext(self.spec, request_id)
        payload = _json_roundtrip(event, "event")  # (a copy: the handler cannot change ours)
        self.invocations += 1
        started = time.monotonic()
        log.debug("START %s RequestId: %s", self.spec.logical_id, context.aws_request_id)
        try:
            with acting_as(self.role):
                result = handler(payload, context)
        except Exception as exc:
            log.exception("%s raised (RequestId %s)", self.spec.logical_id, context.aws_request_id)
            raise FunctionError(self.spec.logical_id, exc) from exc
        finally:
            elapsed = time.monotonic() - started
            log.debug(
                "REPORT %s RequestId: %s Duration: %.1f ms",
                self.spec.logical_id,
                context.aws_request_id,
                elapsed * 1000,
            )
            if elapsed > self.spec.timeout_s:
                log.warning(
                    "%s ran %.1f s, over its Timeout of %d s (Lambda would have killed it)",
                    self.spec.logical_id,
                    elapsed,
                    self.spec.timeout_s,
                )
        try:
            return _json_roundtrip(result, f"{self.spec.logical_id}'s result")
        except TypeError as exc:
            raise FunctionError(self.spec.logical_id, exc) from exc
