"""The resolved, local view of a SAM template: functions, routes, queues, schedules, APIs.

`build_stack()` reads the template once and returns a `Stack` whose every value is already
resolved (no intrinsics left). Only what the template declares exists here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .template import (
    Resolver,
    ResolverOptions,
    TemplateError,
    api_id_for,
    load_template,
    merge_globals,
)

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
_LAMBDA_ARN = re.compile(r"arn:[\w-]+:lambda:[\w-]+:\d{12}:function:([\w.-]+)")
_EXECUTE_API_URL = re.compile(
    r"\b(https|wss)://([a-z0-9]{10})\.execute-api\.[a-z0-9-]+\.amazonaws\.com(/[^\s,\"']*)?"
)


# --------------------------------------------------------------------------- specs


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path | None
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    layer_dirs: list[Path]
    log_group: str
    properties: dict[str, Any]

    @property
    def directory_name(self) -> str | None:
        return self.code_dir.name if self.code_dir else None

    def handler_file(self) -> Path:
        """The file that defines the handler: 'app.handler' -> <CodeUri>/app.py."""
        if self.code_dir is None:
            raise TemplateError(f"{self.logical_id}: CodeUri is not a local directory")
        module, _, attr = self.handler.rpartition(".")
        if not module or not attr:
            raise TemplateError(f"{self.logical_id}: bad Handler {self.handler!r}")
        rel = Path(*module.split("."))
        candidate = self.code_dir / rel.with_suffix(".py")
        if candidate.is_file():
            return candidate
        package = self.code_dir / rel / "__init__.py"
        return package if package.is_file() else candidate

    @property
    def handler_attribute(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass
class HttpRoute:
    api: str  # logical id of the HTTP API
    function: str  # logical id of the function
    event_name: str
    method: str  # GET, POST, ..., ANY; "" for $default
    path: str  # /v1/items/{id}; "" for $default
    payload_format: str = "2.0"
    timeout_ms: int = 30_000

    @property
    def route_key(self) -> str:
        return "$default" if not self.path else f"{self.method} {self.path}"

    def _segments(self) -> list[str]:
        return self.path.split("/")[1:] if self.path != "/" else []

    def specificity(self) -> tuple:
        """Sort key: literal segments beat {params} beat {greedy+}; a method beats ANY."""
        if not self.path:
            return ((3,), 1)
        ranks = []
        for seg in self._segments():
            if seg.startswith("{") and seg.endswith("+}"):
                ranks.append(2)
            elif seg.startswith("{") and seg.endswith("}"):
                ranks.append(1)
            else:
                ranks.append(0)
        return (tuple(ranks), 1 if self.method == "ANY" else 0)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters if this route matches the request, else None."""
        if not self.path:
            return {}
        if self.method not in ("ANY", method.upper()):
            return None
        want = self._segments()
        # Strict like API Gateway: "/items/" is not "/items".
        got = path.split("/")[1:] if path not in ("", "/") else []
        params: dict[str, str] = {}
        for index, seg in enumerate(want):
            if seg.startswith("{") and seg.endswith("+}"):
                rest = got[index:]
                if not rest or not any(rest):
                    return None
                params[seg[1:-2]] = "/".join(rest)
                return params
            if index >= len(got):
                return None
            if seg.startswith("{") and seg.endswith("}"):
                if not got[index]:
                    return None
                params[seg[1:-1]] = got[index]
            elif seg != got[index]:
                return None
        return params if len(got) == len(want) else None


@dataclass
class HttpApiSpec:
    logical_id: str
    api_id: str
    stage: str
    cors: dict[str, Any] | None


@dataclass
class SqsSource:
    function: str
    event_name: str
    queue: str  # logical id
    queue_arn: str
    batch_size: int = 10
    batching_window_s: float = 0
    report_batch_item_failures: bool = False
    enabled: bool = True
    maximum_concurrency: int | None = None


@dataclass
class ScheduleSpec:
    function: str
    event_name: str
    kind: str  # ScheduleV2 or Schedule
    expression: str
    name: str
    input: Any = None
    enabled: bool = True
    retry_attempts: int = 0
    dead_letter_queue: str | None = None  # logical id of a local queue


@dataclass
class WsRoute:
    route_key: str
    function: str
    two_way: bool = False


@dataclass
class WsApiSpec:
    logical_id: str
    api_id: str
    name: str
    stage: str
    route_selection_expression: str
    routes: dict[str, WsRoute] = field(default_factory=dict)


@dataclass
class Stack:
    template_path: Path
    root: Path
    resolver: Resolver
    functions: dict[str, FunctionSpec]
    tables: dict[str, dict[str, Any]]
    queues: dict[str, dict[str, Any]]
    buckets: dict[str, dict[str, Any]]
    http_apis: dict[str, HttpApiSpec]
    routes: list[HttpRoute]
    sqs_sources: list[SqsSource]
    schedules: list[ScheduleSpec]
    ws_apis: dict[str, WsApiSpec]
    outputs: dict[str, Any]
    warnings: list[str]

    # ------------------------------------------------------------------ lookups

    def function(self, key: str) -> FunctionSpec:
        """A function by logical id, by CodeUri directory name, or by 'functions/<dir>'."""
        if key in self.functions:
            return self.functions[key]
        wanted = key.rstrip("/")
        for spec in self.functions.values():
            if spec.code_dir is None:
                continue
            if spec.directory_name == wanted or spec.name == wanted:
                return spec
            try:
                rel = spec.code_dir.relative_to(self.root).as_posix()
            except ValueError:
                rel = None
            if rel == wanted or (rel and Path(wanted).resolve() == spec.code_dir):
                return spec
        raise KeyError(f"no function {key!r}; known: {', '.join(sorted(self.functions))}")

    def match_route(
        self, method: str, path: str
    ) -> tuple[HttpRoute, dict[str, str]] | tuple[None, None]:
        for route in self.routes:  # already sorted most specific first
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None, None

    def queue_name(self, logical_id: str) -> str:
        return self.resolver.physical_name(logical_id)

    def queue_url(self, logical_id: str) -> str:
        if logical_id not in self.queues:
            raise KeyError(f"no queue {logical_id!r}; known: {', '.join(sorted(self.queues))}")
        return self.resolver.queue_url(logical_id)

    def queue_arn(self, logical_id: str) -> str:
        return self.resolver.arn(logical_id)


# --------------------------------------------------------------------------- building


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def parameters_from_environment(
    template_path: str | Path, environ: Mapping[str, str | None]
) -> tuple[dict[str, str], set[str]]:
    """Template parameters read from environment variables, per the template's
    `Metadata.LocalCloud.ParametersFromEnvironment` ({Parameter: VARIABLE}), and the variables
    named there. This is how `SUPABASE_JWT_SECRET=... make dev` reaches a template that stores
    the secret in Secrets Manager from its `SupabaseJwtSecret` parameter, as a deploy does."""
    metadata = load_template(template_path).get("Metadata") or {}
    mapping = (metadata.get("LocalCloud") or {}).get("ParametersFromEnvironment") or {}
    values = {str(param): str(environ[var]) for param, var in mapping.items() if environ.get(var)}
    return values, {str(var) for var in mapping.values()}


def build_stack(
    template_path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    aws_endpoint_url: str | None = None,
    stack_name: str | None = None,
) -> Stack:
    """Load and resolve the template at `template_path`."""
    template_path = Path(template_path).resolve()
    root = template_path.parent
    raw = load_template(template_path)
    options = ResolverOptions(aws_endpoint_url=aws_endpoint_url)
    if stack_name:
        options.stack_name = stack_name
    resolver = Resolver(raw, dict(parameters or {}), options)
    warnings = resolver.warnings
    resources: dict[str, dict[str, Any]] = raw.get("Resources") or {}
    globals_ = raw.get("Globals") or {}

    def props_of(logical_id: str) -> dict[str, Any]:
        return resolver.resolve((resources[logical_id] or {}).get("Properties") or {})

    existing = [lid for lid in resources if resolver.resource_exists(lid)]
    by_type: dict[str, list[str]] = {}
    for lid in existing:
        by_type.setdefault(str(resources[lid].get("Type", "")), []).append(lid)

    # ---- data resources
    tables = {lid: props_of(lid) for lid in by_type.get("AWS::DynamoDB::Table", [])}
    queues = {lid: props_of(lid) for lid in by_type.get("AWS::SQS::Queue", [])}
    buckets = {lid: props_of(lid) for lid in by_type.get("AWS::S3::Bucket", [])}
    queue_by_arn = {resolver.arn(lid): lid for lid in queues}

    # ---- layers
    layer_dir_by_arn: dict[str, Path] = {}
    for rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
        for lid in by_type.get(rtype, []):
            props = props_of(lid)
            content = props.get("ContentUri") or (props.get("Content") or {})
            if isinstance(content, str):
                layer_dir_by_arn[resolver.arn(lid)] = (root / content).resolve()

    # ---- functions
    functions: dict[str, FunctionSpec] = {}
    raw_function_props: dict[str, dict[str, Any]] = {}
    for lid in existing:
        rtype = resources[lid].get("Type")
        if rtype not in FUNCTION_TYPES:
            continue
        merged = (resources[lid] or {}).get("Properties") or {}
        if rtype == "AWS::Serverless::Function":
            merged = merge_globals(globals_.get("Function") or {}, merged)
        props = resolver.resolve(merged)
        raw_function_props[lid] = props
        code = props.get("CodeUri", props.get("Code"))
        code_dir = (root / code).resolve() if isinstance(code, str) else None
        if code_dir is None:
            warnings.append(f"{lid}: CodeUri is not a local path; it cannot run locally")
        runtime = str(props.get("Runtime", ""))
        if runtime and not runtime.startswith("python"):
            warnings.append(f"{lid}: runtime {runtime} cannot run in the local cloud")
        variables = ((props.get("Environment") or {}).get("Variables")) or {}
        layer_dirs: list[Path] = []
        for layer in props.get("Layers") or []:
            if layer in layer_dir_by_arn:
                layer_dirs.append(layer_dir_by_arn[layer])
            else:
                warnings.append(f"{lid}: layer {layer} is not in the template; not loaded")
        logging_config = props.get("LoggingConfig") or {}
        name = resolver.physical_name(lid)
        functions[lid] = FunctionSpec(
            logical_id=lid,
            name=name,
            arn=resolver.arn(lid),
            code_dir=code_dir,
            handler=str(props.get("Handler", "")),
            runtime=runtime,
            memory_mb=_as_int(props.get("MemorySize"), 128),
            timeout_s=_as_int(props.get("Timeout"), 3),
            environment={str(k): _env_str(v) for k, v in variables.items()},
            layer_dirs=layer_dirs,
            log_group=str(logging_config.get("LogGroup") or f"/aws/lambda/{name}"),
            properties=props,
        )
    function_by_name = {spec.name: lid for lid, spec in functions.items()}

    def function_from_uri(uri: Any) -> str | None:
        match = _LAMBDA_ARN.search(str(uri))
        return function_by_name.get(match.group(1)) if match else None

    # ---- HTTP APIs (SAM HttpApi resources, the implicit one, and ApiGatewayV2 HTTP APIs)
    http_apis: dict[str, HttpApiSpec] = {}
    global_http = globals_.get("HttpApi") or {}
    http_api_ids = list(by_type.get("AWS::Serverless::HttpApi", []))
    if "ServerlessHttpApi" in resolver.implicit and "ServerlessHttpApi" not in resources:
        http_api_ids.append("ServerlessHttpApi")
    for lid in http_api_ids:
        merged = merge_globals(global_http, (resources.get(lid) or {}).get("Properties") or {})
        props = resolver.resolve(merged)
        cors = props.get("CorsConfiguration")
        if cors is True:
            cors = {"AllowOrigins": ["*"], "AllowMethods": ["*"], "AllowHeaders": ["*"]}
        http_apis[lid] = HttpApiSpec(
            lid, api_id_for(lid), str(props.get("StageName", "$default")), cors or None
        )
    v2_apis = {lid: props_of(lid) for lid in by_type.get("AWS::ApiGatewayV2::Api", [])}
    for lid, props in v2_apis.items():
        if str(props.get("ProtocolType", "")).upper() == "HTTP":
            cors = props.get("CorsConfiguration")
            http_apis[lid] = HttpApiSpec(lid, api_id_for(lid), "$default", cors or None)
    api_by_id = {api_id_for(lid): lid for lid in [*http_api_ids, *v2_apis]}

    routes: list[HttpRoute] = []
    sqs_sources: list[SqsSource] = []
    schedules: list[ScheduleSpec] = []
    for lid, props in raw_function_props.items():
        for event_name, event in (props.get("Events") or {}).items():
            etype = event.get("Type")
            eprops = event.get("Properties") or {}
            where = f"{lid}.Events.{event_name}"
            if etype == "HttpApi":
                api_ref = eprops.get("ApiId", api_id_for("ServerlessHttpApi"))
                api = api_by_id.get(str(api_ref))
                if api is None:
                    warnings.append(f"{where}: ApiId {api_ref} is not a local HTTP API")
                    continue
                path, method = eprops.get("Path"), eprops.get("Method")
                fmt = str(eprops.get("PayloadFormatVersion", "2.0"))
                if fmt != "2.0":
                    warnings.append(f"{where}: payload format {fmt} is served as 2.0 locally")
                routes.append(
                    HttpRoute(
                        api=api,
                        function=lid,
                        event_name=event_name,
                        method=str(method or "ANY").upper() if path else "",
                        path=str(path or ""),
                        timeout_ms=_as_int(eprops.get("TimeoutInMillis"), 30_000),
                    )
                )
            elif etype == "SQS":
                queue = queue_by_arn.get(str(eprops.get("Queue")))
                if queue is None:
                    warnings.append(f"{where}: queue {eprops.get('Queue')} is not in the template")
                    continue
                if eprops.get("FilterCriteria"):
                    warnings.append(f"{where}: FilterCriteria is ignored locally")
                scaling = eprops.get("ScalingConfig") or {}
                sqs_sources.append(
                    SqsSource(
                        function=lid,
                        event_name=event_name,
                        queue=queue,
                        queue_arn=resolver.arn(queue),
                        batch_size=_as_int(eprops.get("BatchSize"), 10),
                        batching_window_s=float(eprops.get("MaximumBatchingWindowInSeconds") or 0),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (eprops.get("FunctionResponseTypes") or []),
                        enabled=str(eprops.get("Enabled", True)).lower() != "false",
                        maximum_concurrency=scaling.get("MaximumConcurrency"),
                    )
                )
            elif etype in ("Schedule", "ScheduleV2"):
                expression = eprops.get("ScheduleExpression") or eprops.get("Schedule")
                if not expression:
                    warnings.append(f"{where}: no schedule expression")
                    continue
                state = str(eprops.get("State", "ENABLED")).upper()
                enabled = (
                    state != "DISABLED" and str(eprops.get("Enabled", True)).lower() != "false"
                )
                dlq_arn = (eprops.get("DeadLetterConfig") or {}).get("Arn")
                dlq = queue_by_arn.get(str(dlq_arn)) if dlq_arn else None
                if dlq_arn and dlq is None:
                    warnings.append(f"{where}: dead-letter {dlq_arn} is not a local queue")
                raw_input = eprops.get("Input")
                try:
                    event_input = json.loads(raw_input) if isinstance(raw_input, str) else raw_input
                except ValueError:
                    event_input = raw_input
                schedules.append(
                    ScheduleSpec(
                        function=lid,
                        event_name=event_name,
                        kind=str(etype),
                        expression=str(expression),
                        name=str(eprops.get("Name") or f"{functions[lid].name}-{event_name}"),
                        input=event_input,
                        enabled=enabled,
                        retry_attempts=_as_int(
                            (eprops.get("RetryPolicy") or {}).get("MaximumRetryAttempts"),
                            0,
                        ),
                        dead_letter_queue=dlq,
                    )
                )
            else:
                warnings.append(f"{where}: event type {etype} is not emulated locally")

    # ---- ApiGatewayV2 routes/integrations (WebSocket and raw HTTP APIs)
    integrations: dict[str, dict[str, Any]] = {}
    for lid in by_type.get("AWS::ApiGatewayV2::Integration", []):
        integrations[str(resolver.ref(lid))] = props_of(lid)
    stages: dict[str, str] = {}
    for lid in by_type.get("AWS::ApiGatewayV2::Stage", []):
        props = props_of(lid)
        stages.setdefault(str(props.get("ApiId")), str(props.get("StageName", "$default")))

    ws_apis: dict[str, WsApiSpec] = {}
    for lid, props in v2_apis.items():
        if str(props.get("ProtocolType", "")).upper() == "WEBSOCKET":
            api_id = api_id_for(lid)
            ws_apis[lid] = WsApiSpec(
                logical_id=lid,
                api_id=api_id,
                name=str(props.get("Name", lid)),
                stage=stages.get(api_id, "$default"),
                route_selection_expression=str(
                    props.get("RouteSelectionExpression", "$request.body.action")
                ),
            )
    ws_by_id = {spec.api_id: spec for spec in ws_apis.values()}
    for lid in by_type.get("AWS::ApiGatewayV2::Route", []):
        props = props_of(lid)
        api_id = str(props.get("ApiId"))
        target = str(props.get("Target", ""))
        integration = integrations.get(target.removeprefix("integrations/"))
        function = function_from_uri((integration or {}).get("IntegrationUri", ""))
        if function is None:
            warnings.append(f"{lid}: target {target} is not a local Lambda integration")
            continue
        route_key = str(props.get("RouteKey"))
        if api_id in ws_by_id:
            ws_by_id[api_id].routes[route_key] = WsRoute(
                route_key, function, bool(props.get("RouteResponseSelectionExpression"))
            )
        elif api_id in api_by_id and api_by_id[api_id] in http_apis:
            method, _, path = route_key.partition(" ")
            fmt = str((integration or {}).get("PayloadFormatVersion", "2.0"))
            if fmt != "2.0":
                warnings.append(f"{lid}: payload format {fmt} is served as 2.0 locally")
            routes.append(
                HttpRoute(
                    api=api_by_id[api_id],
                    function=function,
                    event_name=lid,
                    method=method if path else "",
                    path=path,
                )
            )
        else:
            warnings.append(f"{lid}: ApiId {api_id} is not a local API")

    seen: dict[tuple[str, str], HttpRoute] = {}
    for route in routes:
        key = (route.api, route.route_key)
        if key in seen:
            warnings.append(
                f"route {route.route_key} is declared by {seen[key].function} and {route.function}"
            )
        seen.setdefault(key, route)
    routes.sort(key=HttpRoute.specificity)

    outputs: dict[str, Any] = {}
    for name, output in (raw.get("Outputs") or {}).items():
        cond = (output or {}).get("Condition")
        if cond and not resolver.condition(cond):
            continue
        outputs[name] = resolver.resolve((output or {}).get("Value"))

    return Stack(
        template_path=template_path,
        root=root,
        resolver=resolver,
        functions=functions,
        tables=tables,
        queues=queues,
        buckets=buckets,
        http_apis=http_apis,
        routes=routes,
        sqs_sources=sqs_sources,
        schedules=schedules,
        ws_apis=ws_apis,
        outputs=outputs,
        warnings=warnings,
    )


def localize_urls(
    value: str, http_base: str, ws_paths: Mapping[str, str], http_ids: set[str]
) -> str:
    """Rewrite execute-api URLs of APIs in this template to their local equivalents.

    `https://<wsApiId>.execute-api.<region>.amazonaws.com/<stage>` (the management endpoint)
    becomes `http://127.0.0.1:<port><ws path>`; `wss://` becomes `ws://`; an HTTP API's URL
    becomes the local base URL.
    """

    def replace(match: re.Match[str]) -> str:
        scheme, api_id = match.group(1), match.group(2)
        if api_id in ws_paths:
            base = http_base if scheme == "https" else http_base.replace("http", "ws", 1)
            return base + ws_paths[api_id]
        if api_id in http_ids:
            return http_base
        return match.group(0)

    return _EXECUTE_API_URL.sub(replace, value)
