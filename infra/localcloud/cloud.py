"""`LocalCloud`: the template running in this process against moto.

    with LocalCloud("template.yaml", port=0) as cloud:
        httpx.get(cloud.base_url + "/v1/health")
        cloud.boto3_client("sqs").send_message(QueueUrl=cloud.queue_url("AnalyzeQueue"), ...)
        cloud.drain()

Start order: moto (in-process ThreadedMotoServer), the HTTP socket (so the port is known),
the resolved template, os.environ, the template's resources in moto, the HTTP/WebSocket
server, the SQS pumps and the scheduler. `stop()` undoes all of it, including os.environ
and sys.path, so tests stay hermetic.

Moto's state is process-global: it is reset when the first LocalCloud of a process starts.
Clouds running at the same time in one process need different `stack_name`s (so their
resource names differ) and share os.environ: the most recently started one's wins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from . import iam, transport
from .container import ProcessRuntime
from .env import DUMMY_CREDENTIAL, EnvPlan, plan_environment
from .gateway import Gateway
from .motofixes import (
    patch_moto_dynamodb_scale,
    patch_moto_random_ids,
    patch_moto_response_overhead,
    patch_moto_s3_events,
    patch_moto_server_dispatch,
    patch_moto_sqs_clock,
    patch_moto_sqs_scale,
    serialize_moto_dynamodb,
)
from .pump import PollerQueue, SqsPump
from .resources import create_resources
from .runtime import FunctionError, FunctionRuntime
from .schedules import Scheduler, scheduled_event
from .stack import (
    ScheduleSpec,
    Stack,
    build_stack,
    localize_urls,
    parameters_from_environment,
)
from .state import LocalState
from .template import TemplateError

log = logging.getLogger("localcloud")

DEFAULT_PORT = 8787
STOP_GRACE_SECONDS = 5.0
# Which functions run in processes of their own (container.py): none, the SQS-triggered
# workers, or all of them.
PROCESS_MODES = ("none", "workers", "all")


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _free_socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    # whose proto says TCP, and accepted connections inherit it. Without it, every response
    # on a kept-alive connection (uvicorn writes headers and body apart) waited ~40 ms for the
    # client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class LocalCloud:
    """Run a SAM template locally: moto resources, HTTP/WS API, SQS pumps, schedules."""

    _live: ClassVar[set[LocalCloud]] = set()
    _live_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        template_path: str | os.PathLike[str] = "template.yaml",
        *,
        port: int = DEFAULT_PORT,
        host: str = "127.0.0.1",
        moto_port: int = 0,
        parameters: Mapping[str, Any] | None = None,
        env_overrides: Mapping[str, str | None] | None = None,
        serve_http: bool = True,
        pumps: bool = True,
        schedules: bool = True,
        retry_visibility_seconds: int = 1,
        stage_prefix: bool = False,
        http_timeout: float | None = 30.0,
        reload: bool = False,
        stack_name: str | None = None,
        max_workers: int = 32,
        state_dir: str | os.PathLike[str] | None = None,
        enforce_iam: bool = True,
        processes: str = "none",
    ) -> None:
        if processes not in PROCESS_MODES:
            raise ValueError(f"processes must be one of {PROCESS_MODES}, not {processes!r}")
        self.template_path = Path(template_path).resolve()
        self.host = host
        self.port = port
        self.moto_port = moto_port
        self.parameters = dict(parameters or {})
        self.env_overrides = dict(env_overrides or {})
        self.serve_http = serve_http
        self.run_pumps = pumps
        self.run_schedules = schedules
        self.retry_visibility_seconds = retry_visibility_seconds
        self.stage_prefix = stage_prefix
        self.http_timeout = http_timeout
        self.reload = reload
        self.stack_name = stack_name
        self.max_workers = max_workers
        self.enforce_iam = enforce_iam
        self.processes = processes
        self.roles: dict[str, iam.Role] = {}
        self._reload_lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.state: LocalState | None = None
        self._last_reload_check = 0.0
        self._code_fingerprint: int | None = None

        self.stack: Stack | None = None  # type: ignore[assignment]
        self.env_plan: EnvPlan | None = None
        self.warnings: list[str] = []
        self.runtimes: dict[str, FunctionRuntime | ProcessRuntime] = {}
        self.pumps: list[SqsPump] = []
        self.scheduler: Scheduler | None = None
        self.gateway: Any = None
        self.executor: ThreadPoolExecutor | None = None  # type: ignore[assignment]
        self.moto_endpoint = ""
        self.base_url = ""
        self.startup_seconds = 0.0
        self._moto: Any = None
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._saved_environ: dict[str, str] | None = None
        self._saved_path: list[str] | None = None
        self._session: Any = None
        self._relay: transport.Relay | None = None
        self._shares_moto = False
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCloud:
        if self._started:
            return self
        started = time.monotonic()
        self._saved_environ = dict(os.environ)
        self._saved_path = list(sys.path)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        self.startup_seconds = time.monotonic() - started
        log.info("local cloud up in %.2f s", self.startup_seconds)
        return self

    def _start(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        patch_moto_s3_events()
        serialize_moto_dynamodb()
        patch_moto_dynamodb_scale()
        patch_moto_sqs_clock()
        patch_moto_sqs_scale()
        patch_moto_random_ids()
        patch_moto_server_dispatch()
        patch_moto_response_overhead()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{moto_host}:{moto_port}"
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        moto_app = DomainDispatcherApplication(create_backend_app)
        transport.install(self.moto_endpoint, moto_app)
        if self.processes != "none":
            self._relay = transport.Relay(moto_app)
        # Moto's backends are process-global: start from a clean slate.
        with LocalCloud._live_lock:
            others = set(LocalCloud._live)
            LocalCloud._live.add(self)
        self._shares_moto = bool(others)
        if not others:
            # Moto's backends are process-global: start from a clean slate, unless another
            # LocalCloud in this process is using them.
            reset = f"{self.moto_endpoint}/moto-api/reset"
            request = urllib.request.Request(reset, method="POST")  # noqa: S310 - loopback
            urllib.request.urlopen(request, timeout=10).close()  # noqa: S310

        if self.serve_http:
            self._socket = _free_socket(self.host, self.port)
            self.port = self._socket.getsockname()[1]
        self.base_url = f"http://{self.host}:{self.port}"

        from_env, consumed = parameters_from_environment(
            self.template_path, {**os.environ, **self.env_overrides}
        )
        self.stack = build_stack(
            self.template_path,
            {**from_env, **self.parameters},
            aws_endpoint_url=self.moto_endpoint,
            stack_name=self.stack_name,
        )
        refused = self.stack.resolver.failed_rules()
        if refused:
            raise TemplateError(f"the template's Rules refuse a deploy: {'; '.join(refused)}")
        self.warnings = list(self.stack.warnings)
        name = self.stack.resolver.options.stack_name
        clash = [c for c in others if c.stack and c.stack.resolver.options.stack_name == name]
        if clash:
            raise RuntimeError(
                f"another LocalCloud with stack name {name!r} is running in this process; "
                "moto's state is shared, so pass a different stack_name="
            )
        self.env_plan = plan_environment(
            self.stack,
            moto_endpoint=self.moto_endpoint,
            http_base=self.base_url,
            ws_paths=self._ws_paths_by_api_id(),
            current=os.environ,
            overrides=self.env_overrides,
            region=self.stack.resolver.options.region,
            consumed=consumed,
        )
        self.warnings += self.env_plan.warnings
        self.env_plan.apply()

        self._session = boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIAL,
            aws_secret_access_key=DUMMY_CREDENTIAL,
            region_name=self.stack.resolver.options.region,
        )
        self.warnings += create_resources(self.stack, self._session, self.moto_endpoint)
        if self.state_dir is not None:
            options = self.stack.resolver.options
            name_of = self.stack.resolver.physical_name
            state = LocalState(
                self.state_dir,
                account_id=options.account_id,
                region=options.region,
                tables={name_of(lid) for lid in self.stack.tables},
                buckets={name_of(lid) for lid in self.stack.buckets},
                queues={name_of(lid) for lid in self.stack.queues},
            )
            report = state.restore()
            log.info("%s", report.summary())
            self.warnings += report.problems
            self.state = state  # only now may stop() save: a failed restore must not overwrite
            state.start()
        for warning in self.warnings:
            log.warning("%s", warning)

        for spec in self.stack.functions.values():
            for layer_dir in spec.layer_dirs:
                for candidate in (layer_dir, layer_dir / "python"):
                    if candidate.is_dir() and str(candidate) not in sys.path:
                        sys.path.insert(0, str(candidate))
        if self.enforce_iam:
            self.roles, iam_warnings = iam.stack_roles(self.stack, self._ws_endpoints())
            self.warnings += iam_warnings
            iam.install()
        own_process = {
            "none": set(),
            "workers": {source.function for source in self.stack.sqs_sources},
            "all": set(self.stack.functions),
        }[self.processes]
        self.runtimes = {
            lid: ProcessRuntime(spec, self.roles.get(lid), self._relay)
            if lid in own_process and self._relay is not None
            else FunctionRuntime(spec, role=self.roles.get(lid))
            for lid, spec in self.stack.functions.items()
        }
        if self.reload:
            self._code_fingerprint = self._fingerprint()
        self.executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="lambda")

        if self.serve_http:
            self._start_server()
        if self.run_pumps:
            for source in self.stack.sqs_sources:
                if not source.enabled:
                    continue
                options = self.stack.resolver.options
                queue = PollerQueue(
                    self.stack.queue_url(source.queue),
                    source.queue_arn,
                    account_id=options.account_id,
                    region=options.region,
                    role=self.roles.get(source.function),
                )
                pump = SqsPump(
                    source,
                    queue=queue,
                    invoke=self.invoke,
                    retry_visibility_seconds=self.retry_visibility_seconds,
                )
                pump.start()
                self.pumps.append(pump)
        if self.run_schedules and self.stack.schedules:
            self.scheduler = Scheduler(self.stack.schedules, self._fire)
            self.scheduler.start()

    def _ws_paths_by_api_id(self) -> dict[str, str]:
        assert self.stack is not None
        apis = list(self.stack.ws_apis.values())
        return {api.api_id: "/ws" if len(apis) == 1 else f"/ws/{api.logical_id}" for api in apis}

    def _ws_endpoints(self) -> dict[str, tuple[str, str]]:
        """Local management API URL -> (API id, stage), the ARN parts IAM checks."""
        assert self.stack is not None
        paths = self._ws_paths_by_api_id()
        return {
            self.base_url + paths[api.api_id]: (api.api_id, api.stage)
            for api in self.stack.ws_apis.values()
        }

    def _start_server(self) -> None:
        import uvicorn

        self.gateway = Gateway(self)
        config = uvicorn.Config(
            self.gateway,
            lifespan="off",
            ws="websockets-sansio",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            ws_ping_interval=None,
        )
        self._server = uvicorn.Server(config)
        sock = self._socket
        self._server_thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="localcloud-http",
            daemon=True,
        )
        self._server_thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local HTTP server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        with LocalCloud._live_lock:
            LocalCloud._live.discard(self)
        # One grace period for everything in flight, so `serve` exits well within 10 s of
        # SIGTERM: no new requests or batches, running invocations finish (or are left: their
        # messages stay in flight and are redelivered), then the state is saved.
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for pump in self.pumps:
            pump.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=max(0.1, deadline - time.monotonic()))
        for pump in self.pumps:
            pump.join(timeout=max(0.1, deadline - time.monotonic()))
        with self._idle:
            self._idle.wait_for(
                lambda: self._in_flight == 0, timeout=max(0.0, deadline - time.monotonic())
            )
            if self._in_flight:
                log.warning("stopping with %d invocation(s) still running", self._in_flight)
        children = [
            child
            for runtime in self.runtimes.values()
            if isinstance(runtime, ProcessRuntime) and (child := runtime.stop()) is not None
        ]
        for child in children:  # each exits once what it runs has answered (or is killed)
            child.wait(timeout=deadline + 1 - time.monotonic())
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.state is not None:
            try:
                self.state.stop()
            except Exception:  # the previous snapshot stays intact
                log.exception("could not save the local state to %s", self.state.directory)
            self.state = None
        # Only a cloud that started removes its stack: one refused at start (another cloud of
        # the same stack name is running) must not delete that cloud's resources.
        if self._started and self._shares_moto and self.stack is not None and self._session:
            self._remove_resources()
        if self.moto_endpoint:
            transport.uninstall(self.moto_endpoint)
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        if self._saved_environ is not None and self.env_plan is not None:
            # Put back only what the cloud set or unset; leave other changes alone.
            for name in set(self.env_plan.set_vars) | self.env_plan.unset_vars:
                if name in self._saved_environ:
                    os.environ[name] = self._saved_environ[name]
                else:
                    os.environ.pop(name, None)
        if self._saved_path is not None:
            sys.path[:] = self._saved_path
        self.pumps = []
        self.scheduler = None
        self._server = self._server_thread = self._moto = self._socket = None
        self._saved_environ = self._saved_path = None
        self._started = False

    def _remove_resources(self) -> None:
        """Delete this stack's tables, queues and buckets from moto, which another running
        cloud keeps alive: the next cloud with this stack name starts as empty as after a
        reset (its saved state, if any, is restored from its state directory)."""
        stack = self._require()
        name_of = stack.resolver.physical_name
        with contextlib.suppress(Exception):
            dynamodb, sqs, s3 = (self.boto3_client(s) for s in ("dynamodb", "sqs", "s3"))
            for logical_id in stack.tables:
                with contextlib.suppress(Exception):
                    dynamodb.delete_table(TableName=name_of(logical_id))
            for logical_id in stack.queues:
                with contextlib.suppress(Exception):
                    sqs.delete_queue(QueueUrl=stack.queue_url(logical_id))
            for logical_id in stack.buckets:
                bucket = name_of(logical_id)
                with contextlib.suppress(Exception):
                    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                        for obj in page.get("Contents", []):
                            s3.delete_object(Bucket=bucket, Key=obj["Key"])
                    s3.delete_bucket(Bucket=bucket)

    def ensure_resources(self) -> None:
        """Re-create any of the template's tables, queues or buckets that are missing
        (e.g. after something reset moto's process-global state, like `mock_aws()`)."""
        stack = self._require()
        create_resources(stack, self._session, self.moto_endpoint, only_missing=True)

    # ------------------------------------------------------------------ accessors

    def _require(self) -> Stack:
        if self.stack is None:
            raise RuntimeError("the local cloud is not started")
        return self.stack

    @property
    def ws_url(self) -> str | None:
        """URL of the (single) WebSocket API; see `ws_urls` when there are several."""
        urls = self.ws_urls
        return next(iter(urls.values())) if len(urls) == 1 else None

    @property
    def ws_urls(self) -> dict[str, str]:
        stack = self._require()
        paths = self._ws_paths_by_api_id()
        ws_base = self.base_url.replace("http", "ws", 1)
        return {lid: ws_base + paths[api.api_id] for lid, api in stack.ws_apis.items()}

    @property
    def management_endpoint(self) -> str | None:
        """endpoint_url for boto3's apigatewaymanagementapi (the single WebSocket API)."""
        url = self.ws_url
        return url.replace("ws", "http", 1) if url else None

    def queue_url(self, logical_id: str) -> str:
        return self._require().queue_url(logical_id)

    def queue_arn(self, logical_id: str) -> str:
        return self._require().queue_arn(logical_id)

    def physical_id(self, logical_id: str) -> Any:
        """What `!Ref <logical_id>` resolves to locally (table name, queue URL, ...)."""
        return self._require().resolver.ref(logical_id)

    def table_name(self, logical_id: str) -> str:
        return self._require().resolver.physical_name(logical_id)

    def bucket_name(self, logical_id: str) -> str:
        return self._require().resolver.physical_name(logical_id)

    def boto3_client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client pointed at this cloud's moto (or at the local management API)."""
        stack = self._require()
        if service == "apigatewaymanagementapi":
            kwargs.setdefault("endpoint_url", self.management_endpoint)
        kwargs.setdefault("endpoint_url", self.moto_endpoint)
        kwargs.setdefault("region_name", stack.resolver.options.region)
        kwargs.setdefault("aws_access_key_id", DUMMY_CREDENTIAL)
        kwargs.setdefault("aws_secret_access_key", DUMMY_CREDENTIAL)
        import boto3

        return boto3.session.Session().client(service, **kwargs)

    # ------------------------------------------------------------------ invoking

    def runtime(self, function: str) -> FunctionRuntime | ProcessRuntime:
        stack = self._require()
        return self.runtimes[stack.function(function).logical_id]

    def invoke(self, function: str, event: Any = None) -> Any:
        """Invoke a function (logical id or CodeUri dir name) synchronously; returns its
        JSON result or raises FunctionError."""
        if self.reload:
            self._reload_if_changed()
        with self._idle:
            self._in_flight += 1
        try:
            return self.runtime(function).invoke({} if event is None else event)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    # ------------------------------------------------------------------ hot reload

    def _watched_dirs(self) -> list[Path]:
        stack = self._require()
        dirs: set[Path] = set()
        for spec in stack.functions.values():
            if spec.code_dir is not None:
                dirs.add(spec.code_dir)
            dirs.update(spec.layer_dirs)
        return sorted(d for d in dirs if d.is_dir())

    def _fingerprint(self) -> int:
        entries = []
        for root in self._watched_dirs():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
                for name in filenames:
                    if name.endswith(".py"):
                        path = os.path.join(dirpath, name)
                        with contextlib.suppress(OSError):
                            entries.append((path, os.stat(path).st_mtime_ns))
        return hash(tuple(sorted(entries)))

    def _reload_if_changed(self) -> None:
        """Cold-start every function on its next invocation after a .py file changed."""
        if time.monotonic() - self._last_reload_check < 0.5:
            return
        with self._reload_lock:
            if time.monotonic() - self._last_reload_check < 0.5:
                return
            self._last_reload_check = time.monotonic()
            fingerprint = self._fingerprint()
            if fingerprint == self._code_fingerprint:
                return
            self._code_fingerprint = fingerprint
            log.info("code changed: functions cold-start on their next invocation")
            for runtime in self.runtimes.values():
                runtime.unload()
            prefixes = tuple(str(d) + os.sep for d in self._watched_dirs())
            for name, module in list(sys.modules.items()):
                file = getattr(module, "__file__", None)
                if file and file.startswith(prefixes):
                    sys.modules.pop(name, None)

    def _fire(self, spec: ScheduleSpec) -> Any:
        stack = self._require()
        options = stack.resolver.options
        function = stack.functions[spec.function]
        event = scheduled_event(spec, function.arn, options.region, options.account_id)
        attempts = 1 + max(0, spec.retry_attempts)
        last: FunctionError | None = None
        for attempt in range(1, attempts + 1):
            try:
                result = self.invoke(spec.function, event)
                log.info("schedule %s -> %s ok", spec.name, spec.function)
                return result
            except FunctionError as exc:
                last = exc
                log.warning("schedule %s attempt %d/%d failed", spec.name, attempt, attempts)
        assert last is not None
        if spec.dead_letter_queue:
            self.boto3_client("sqs").send_message(
                QueueUrl=stack.queue_url(spec.dead_letter_queue),
                MessageBody=json.dumps(event),
                MessageAttributes={
                    "ERROR_CODE": {"DataType": "String", "StringValue": last.error_type},
                    "ERROR_MESSAGE": {
                        "DataType": "String",
                        "StringValue": last.error_message[:256] or last.error_type,
                    },
                    "RETRY_ATTEMPTS": {"DataType": "Number", "StringValue": str(attempts - 1)},
                },
            )
            log.warning("schedule %s dead-lettered to %s", spec.name, spec.dead_letter_queue)
        raise last

    def fire_schedule(self, name: str) -> list[dict[str, Any]]:
        """Fire now every schedule matching `name` (function logical id or dir, schedule
        name, or event name). Returns [{schedule, function, result | error}]."""
        stack = self._require()
        try:
            function = stack.function(name).logical_id
        except KeyError:
            function = None
        chosen = [
            s for s in stack.schedules if s.function == function or name in (s.name, s.event_name)
        ]
        if not chosen:
            raise KeyError(f"no schedule for {name!r}")
        out: list[dict[str, Any]] = []
        for spec in chosen:
            entry: dict[str, Any] = {"schedule": spec.name, "function": spec.function}
            try:
                entry["result"] = self._fire(spec)
            except FunctionError as exc:
                entry["error"] = exc.payload()
            out.append(entry)
        return out

    # ------------------------------------------------------------------ queues

    def queue_counts(self, queues: list[str] | None = None) -> dict[str, dict[str, int]]:
        """Approximate message counts per queue logical id (all queues by default), as
        GetQueueAttributes reports them, read from moto's queues: drain() and the admin
        endpoint poll this, and an API call per queue cost milliseconds."""
        from moto.sqs.models import sqs_backends

        stack = self._require()
        options = stack.resolver.options
        backend = sqs_backends[options.account_id][options.region]
        counts: dict[str, dict[str, int]] = {}
        for logical_id in stack.queues if queues is None else queues:
            name = stack.queue_url(logical_id).rsplit("/", 1)[-1]
            queue = backend.queues.get(name)
            if queue is None:
                raise KeyError(f"queue {name} ({logical_id}) does not exist in moto")
            visible = in_flight = delayed = 0
            for message in list(queue._messages):
                shown, held = message.visible, message.delayed
                visible += shown and not held
                in_flight += not shown
                delayed += held
            counts[logical_id] = {"visible": visible, "in_flight": in_flight, "delayed": delayed}
        return counts

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queue with a pump is empty (nothing visible, in flight or
        delayed) and every pump is idle. Raises TimeoutError with the counts otherwise."""
        self._require()
        pumped = {p.source.queue for p in self.pumps}
        deadline = time.monotonic() + timeout
        quiet_checks = 0
        counts: dict[str, dict[str, int]] = {}
        while time.monotonic() < deadline:
            counts = self.queue_counts(sorted(pumped))
            empty = all(sum(c.values()) == 0 for c in counts.values())
            idle = not any(p.busy for p in self.pumps)
            quiet_checks = quiet_checks + 1 if empty and idle else 0
            if quiet_checks >= 2:
                return
            time.sleep(0.05)
        raise TimeoutError(f"queues not drained after {timeout} s: {counts}")

    # ------------------------------------------------------------------ description

    def describe(self) -> dict[str, Any]:
        """Everything a developer wants to see: URLs, routes, queues, functions."""
        stack = self._require()
        http_ids = {api.api_id for api in stack.http_apis.values()}
        ws_paths = self._ws_paths_by_api_id()

        def local(value: Any) -> Any:
            if isinstance(value, str):
                return localize_urls(value, self.base_url, ws_paths, http_ids)
            return value

        return {
            "base_url": self.base_url if self.serve_http else None,
            "ws_urls": self.ws_urls if self.serve_http else {},
            "management_endpoint": self.management_endpoint if self.serve_http else None,
            "aws_endpoint_url": self.moto_endpoint,
            "routes": [{"route": r.route_key, "function": r.function} for r in stack.routes],
            "functions": {
                lid: {
                    "handler": _display_path(spec.handler_file(), stack.root)
                    if spec.code_dir
                    else None,
                    "timeout": spec.timeout_s,
                    "memory": spec.memory_mb,
                }
                for lid, spec in stack.functions.items()
            },
            "queues": {lid: stack.queue_url(lid) for lid in stack.queues},
            "event_sources": [
                {
                    "function": s.function,
                    "queue": s.queue,
                    "batch_size": s.batch_size,
                    "window_s": s.batching_window_s,
                    "report_batch_item_failures": s.report_batch_item_failures,
                }
                for s in stack.sqs_sources
            ],
            "schedules": [
                {"name": s.name, "function": s.function, "expression": s.expression}
                for s in stack.schedules
            ],
            "tables": {lid: self.table_name(lid) for lid in stack.tables},
            "buckets": {lid: self.bucket_name(lid) for lid in stack.buckets},
            "outputs": {k: local(v) for k, v in stack.outputs.items()},
            "warnings": self.warnings,
        }

    def summary_lines(self) -> list[str]:
        """A human-readable startup summary (what `serve` prints)."""
        info = self.describe()
        stack = self._require()
        lines = [
            f"local cloud for {stack.template_path.name} up in {self.startup_seconds:.2f} s",
            f"  HTTP API      {info['base_url']}   ({len(info['routes'])} routes)",
        ]
        for logical_id, url in info["ws_urls"].items():
            lines.append(f"  WebSocket     {url}   ({logical_id})")
        if info["management_endpoint"]:
            lines.append(f"  WS mgmt API   {info['management_endpoint']}/@connections/{{id}}")
        lines.append(f"  AWS (moto)    {info['aws_endpoint_url']}   (AWS_ENDPOINT_URL)")
        for source in info["event_sources"]:
            lines.append(f"  SQS pump      {source['queue']} -> {source['function']}")
        for schedule in info["schedules"]:
            lines.append(
                f"  Schedule      {schedule['expression']} -> {schedule['function']}   "
                f"(fire now: curl -X POST {info['base_url']}/_local/schedules/"
                f"{schedule['function']})"
            )
        named = [a for a in stack.http_apis.values() if a.stage != "$default"]
        if named and not self.stage_prefix:
            lines.append(
                f"  note: {named[0].logical_id} has StageName {named[0].stage!r}: deployed, its "
                f"rawPath starts with /{named[0].stage} (--stage-prefix serves it that way)"
            )
        if self.warnings:
            lines.append(f"  {len(self.warnings)} warning(s): see the log above or GET /_local")
        lines.append(f"  Admin         {info['base_url']}/_local")
        return lines
