"""IAM, enforced in this process: each function's AWS calls are checked against its role.

The roles come from the template expanded by `aws-sam-translator` (what `sam deploy` hands to
CloudFormation): SAM policy templates, inline statements and the managed policies SAM attaches,
with their resources. Intrinsics in them are resolved with the local cloud's resolver, so the
ARNs are the local resources' ARNs.

Enforcement sits in botocore (`BaseClient._emit_api_params`, which every API call and every
presigned URL/POST goes through), so it covers every client in the process: memlayer's cached
ones, the one Powertools Parameters builds, the pumps'. The calling function is a contextvar that
`FunctionRuntime.invoke` sets around each invocation (asyncio.to_thread and the S3 transfer
threads carry it). A call outside any function (the local cloud itself, a test's own client) is
not checked. A refused call raises the `ClientError` AWS returns: `AccessDeniedException` (JSON
services, API Gateway) or `AccessDenied` (S3, SQS), with AWS's message naming the action and the
resource.

Why not moto's own IAM (INITIAL_NO_AUTH_ACTION_COUNT): moto checks DynamoDB, S3, Secrets
Manager... actions against resource "*" only, so resource-scoped policies (a table ARN) would
either deny everything or, widened to "*", prove nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from .template import Resolver, TemplateError

log = logging.getLogger("localcloud")

# The managed policies SAM attaches to function roles, as AWS defines them (the parts that
# apply to a function's own calls).
_LOGS = {
    "Effect": "Allow",
    "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
    "Resource": "*",
}
_XRAY = {
    "Effect": "Allow",
    "Action": [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    ],
    "Resource": "*",
}
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "AWSLambdaBasicExecutionRole": [_LOGS],
    "AWSLambdaExecute": [
        _LOGS,
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"},
    ],
    "AWSXrayWriteOnlyAccess": [_XRAY],
    "AWSXRayDaemonWriteAccess": [_XRAY],
    "AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": "*",
        },
        _LOGS,
    ],
    "AWSLambdaDynamoDBExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ],
            "Resource": "*",
        },
        _LOGS,
    ],
}

# botocore signing names that are not the IAM service prefix.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
# Services whose AccessDenied code and HTTP status differ from the JSON default.
_DENIED_SHAPE = {"s3": ("AccessDenied", 403), "sqs": ("AccessDenied", 403)}
_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
# S3 operations whose IAM action has another name (or that need several).
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "UploadPartCopy": "PutObject",
    "DeleteObjects": "DeleteObject",
}
_WS_METHOD = {"PostToConnection": "POST", "GetConnection": "GET", "DeleteConnection": "DELETE"}


# --------------------------------------------------------------------------- policies


def _pattern(values: Any, *, ignore_case: bool) -> re.Pattern[str] | None:
    if values is None:
        return None
    items = [values] if isinstance(values, str) else [str(v) for v in values]
    alternatives = [re.escape(v).replace(r"\*", ".*").replace(r"\?", ".") for v in items]
    return re.compile("(?:" + "|".join(alternatives) + r")\Z", re.IGNORECASE if ignore_case else 0)


@dataclass
class ArnContext:
    region: str
    account_id: str
    partition: str = "aws"
    # Local management API base URL -> (API id, stage), for execute-api:ManageConnections.
    ws_endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        where = f"{self.region}:{self.account_id}" if region else ":"
        return f"arn:{self.partition}:{service}:{where}:{resource}"


@dataclass(frozen=True)
class Statement:
    effect: str
    action: re.Pattern[str] | None
    not_action: re.Pattern[str] | None
    resource: re.Pattern[str] | None
    not_resource: re.Pattern[str] | None
    conditional: bool

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Statement:
        return cls(
            effect=str(raw.get("Effect", "Deny")),
            action=_pattern(raw.get("Action"), ignore_case=True),
            not_action=_pattern(raw.get("NotAction"), ignore_case=True),
            resource=_pattern(raw.get("Resource"), ignore_case=False),
            not_resource=_pattern(raw.get("NotResource"), ignore_case=False),
            conditional=bool(raw.get("Condition")),
        )

    def matches(self, action: str, resource: str) -> bool:
        if self.action is not None and not self.action.match(action):
            return False
        if self.not_action is not None and self.not_action.match(action):
            return False
        if self.resource is not None and not self.resource.match(resource):
            return False
        return not (self.not_resource is not None and self.not_resource.match(resource))


@dataclass
class Role:
    """One function's identity and the statements of all its policies."""

    function: str  # logical id
    function_name: str
    role_name: str
    ctx: ArnContext
    statements: list[Statement] = field(default_factory=list)
    policy_names: list[str] = field(default_factory=list)
    denied: list[tuple[str, str]] = field(default_factory=list)  # (action, resource)

    @property
    def principal_arn(self) -> str:
        session = f"assumed-role/{self.role_name}/{self.function_name}"
        return f"arn:{self.ctx.partition}:sts::{self.ctx.account_id}:{session}"

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - roles live as long as the cloud
    def allows(self, action: str, resource: str) -> bool:
        """IAM's evaluation for identity policies: an explicit Deny wins, else any Allow.
        A statement with a Condition is not evaluated: it never allows, and always denies."""
        allowed = False
        for statement in self.statements:
            if statement.effect == "Deny" and statement.matches(action, resource):
                return False
            if statement.effect == "Allow" and not statement.conditional:
                allowed = allowed or statement.matches(action, resource)
        return allowed

    def __hash__(self) -> int:
        return id(self)


def expand_template(raw: Mapping[str, Any], parameters: Mapping[str, Any], region: str) -> dict:
    """The template as `sam deploy` transforms it (aws-sam-translator). Cached per process:
    importing and running the translator takes a second or two."""
    key = json.dumps([raw, parameters, region], sort_keys=True, default=str)
    return copy.deepcopy(_expand(key))


@functools.lru_cache(maxsize=8)
def _expand(key: str) -> dict:
    raw, parameters, region = json.loads(key)
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # Its metrics object complains at exit that nothing published them.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    template = copy.deepcopy(dict(raw))
    for resource in (template.get("Resources") or {}).values():
        props = (resource or {}).get("Properties") or {}
        # The translator wants S3 locations; `sam deploy` uploads local paths to get them.
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://local-artifacts/{props[key]}"
    values = {k: v for k, v in parameters.items() if v is not None}
    values.setdefault("AWS::Region", region)
    values.setdefault("AWS::Partition", "aws")
    try:
        import boto3

        session = boto3.session.Session(region_name=region)  # only its region is read
        return Translator(None, Parser(), boto_session=session).translate(
            template, parameter_values=values, get_managed_policy_map=dict
        )
    except Exception as exc:
        raise TemplateError(f"aws-sam-translator refused the template: {exc}") from exc


def function_roles(
    expanded: Mapping[str, Any],
    resolver: Resolver,
    functions: Mapping[str, str],
    ctx: ArnContext,
) -> tuple[dict[str, Role], list[str]]:
    """`functions` maps logical id -> function name. Returns the roles and warnings."""
    resources: Mapping[str, Any] = expanded.get("Resources") or {}
    options = resolver.options
    warnings: list[str] = []
    attached: dict[str, list[dict[str, Any]]] = {}
    for lid, resource in resources.items():
        if resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = resource.get("Properties") or {}
            for role_ref in props.get("Roles") or []:
                if isinstance(role_ref, dict) and "Ref" in role_ref:
                    attached.setdefault(role_ref["Ref"], []).append(
                        {"PolicyName": lid, "PolicyDocument": props.get("PolicyDocument")}
                    )
    roles: dict[str, Role] = {}
    for lid, name in functions.items():
        role_ref = ((resources.get(lid) or {}).get("Properties") or {}).get("Role")
        role_id = role_ref.get("Fn::GetAtt", [None])[0] if isinstance(role_ref, dict) else None
        role_resource = resources.get(role_id) if role_id else None
        if not role_resource or role_resource.get("Type") != "AWS::IAM::Role":
            warnings.append(f"{lid}: role {role_ref!r} is not in the template; calls unchecked")
            continue
        props = role_resource.get("Properties") or {}
        role = Role(
            function=lid,
            function_name=name,
            role_name=str(props.get("RoleName") or f"{options.stack_name}-{role_id}"),
            ctx=ctx,
        )
        documents: list[tuple[str, Any]] = []
        for arn in resolver.resolve(props.get("ManagedPolicyArns") or []):
            short = str(arn).rsplit("/", 1)[-1]
            if short not in MANAGED_POLICIES:
                warnings.append(f"{lid}: managed policy {arn} is not known locally; ignored")
                continue
            documents.append((short, {"Statement": MANAGED_POLICIES[short]}))
        # Resolved whole: SAM turns a policy under Fn::If into a Fn::If of policies.
        policies = resolver.resolve([*(props.get("Policies") or []), *attached.get(role_id, [])])
        for policy in policies:
            documents.append((str(policy.get("PolicyName")), policy.get("PolicyDocument")))
        for policy_name, document in documents:
            role.policy_names.append(policy_name)
            statements = (document or {}).get("Statement") or []
            for raw in [statements] if isinstance(statements, dict) else statements:
                role.statements.append(Statement.parse(raw))
        roles[lid] = role
    return roles, warnings


# --------------------------------------------------------------------------- requests -> ARNs


def _queue_arn(ctx: ArnContext, url: str) -> str:
    parts = [p for p in urlparse(url).path.split("/") if p]
    account = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else ctx.account_id
    return f"arn:{ctx.partition}:sqs:{ctx.region}:{account}:{parts[-1] if parts else ''}"


def _table_arn(ctx: ArnContext, table: str, index: str | None = None) -> str:
    arn = table if table.startswith("arn:") else ctx.arn("dynamodb", f"table/{table}")
    return f"{arn}/index/{index}" if index else arn


def required_permissions(
    prefix: str, operation: str, params: Mapping[str, Any], ctx: ArnContext, endpoint: str = ""
) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS checks for one API call."""
    if prefix == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", _table_arn(ctx, t)) for t in params["RequestItems"]]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            # IAM checks each item's own action: Put -> PutItem, ConditionCheck -> ...Item.
            pairs = []
            for item in params.get("TransactItems") or []:
                for kind, body in item.items():
                    pairs.append((f"dynamodb:{kind}Item", _table_arn(ctx, body["TableName"])))
            return pairs
        if "TableName" in params:
            return [
                (
                    f"dynamodb:{operation}",
                    _table_arn(ctx, params["TableName"], params.get("IndexName")),
                )
            ]
        return [(f"dynamodb:{operation}", "*")]
    if prefix == "sqs":
        action = f"sqs:{_SQS_BATCH.get(operation, operation)}"
        if "QueueUrl" in params:
            return [(action, _queue_arn(ctx, params["QueueUrl"]))]
        if "QueueName" in params:
            account = params.get("QueueOwnerAWSAccountId") or ctx.account_id
            arn = f"arn:{ctx.partition}:sqs:{ctx.region}:{account}:{params['QueueName']}"
            return [(action, arn)]
        return [(action, "*")]
    if prefix == "s3":
        bucket = params.get("Bucket")
        if not bucket:
            return [(f"s3:{operation}", "*")]
        bucket_arn = f"arn:{ctx.partition}:s3:::{bucket}"
        action = f"s3:{_S3_ACTIONS.get(operation, operation)}"
        if operation == "DeleteObjects":
            keys = [o["Key"] for o in (params.get("Delete") or {}).get("Objects") or []]
            return [(action, f"{bucket_arn}/{key}") for key in keys]
        pairs = []
        if operation in ("CopyObject", "UploadPartCopy"):
            source = params.get("CopySource")
            if isinstance(source, dict):
                source = f"{source.get('Bucket')}/{source.get('Key')}"
            source_path = unquote(str(source).lstrip("/").split("?", 1)[0])
            pairs.append(("s3:GetObject", f"arn:{ctx.partition}:s3:::{source_path}"))
        key = params.get("Key")
        pairs.append((action, f"{bucket_arn}/{key}" if key is not None else bucket_arn))
        return pairs
    if prefix == "secretsmanager" and "SecretId" in params:
        secret = str(params["SecretId"])
        arn = secret if secret.startswith("arn:") else ctx.arn("secretsmanager", f"secret:{secret}")
        return [(f"secretsmanager:{operation}", arn)]
    if prefix == "ssm" and ("Name" in params or "Names" in params or "Path" in params):
        names = params.get("Names") or [params.get("Name") or params.get("Path")]
        return [
            (f"ssm:{operation}", ctx.arn("ssm", f"parameter/{str(n).lstrip('/')}")) for n in names
        ]
    if prefix == "execute-api" and operation in _WS_METHOD:
        api_id, stage = ctx.ws_endpoints.get(endpoint.rstrip("/"), ("", ""))
        if not api_id:  # a real endpoint: https://{api}.execute-api.{region}.amazonaws.com/{stage}
            url = urlparse(endpoint)
            api_id, stage = url.netloc.split(".", 1)[0], url.path.strip("/")
        resource = f"{api_id}/{stage}/{_WS_METHOD[operation]}/@connections/{params['ConnectionId']}"
        return [("execute-api:ManageConnections", ctx.arn("execute-api", resource))]
    return [(f"{prefix}:{operation}", "*")]


def access_denied(role: Role, prefix: str, operation: str, action: str, resource: str) -> Any:
    """The ClientError AWS raises when the role's policies do not allow `action`."""
    from botocore.exceptions import ClientError

    code, status = _DENIED_SHAPE.get(prefix, ("AccessDeniedException", 400))
    if prefix == "execute-api":
        status = 403
    message = (
        f"User: {role.principal_arn} is not authorized to perform: {action} on resource: "
        f"{resource} because no identity-based policy allows the {action} action"
    )
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": str(uuid.uuid4())},
        },
        operation,
    )


# --------------------------------------------------------------------------- enforcement

current_role: contextvars.ContextVar[Role | None] = contextvars.ContextVar(
    "localcloud_role", default=None
)


@contextlib.contextmanager
def acting_as(role: Role | None) -> Iterator[None]:
    """AWS calls made inside run with `role`'s permissions (None: unchecked)."""
    token = current_role.set(role)
    try:
        yield
    finally:
        current_role.reset(token)


def check_call(client: Any, operation: str, params: Mapping[str, Any]) -> None:
    """Raise AWS's AccessDenied if the current function's role does not allow this call."""
    role = current_role.get()
    if role is None:
        return
    model = client.meta.service_model
    prefix = _IAM_PREFIX.get(model.signing_name, model.signing_name)
    pairs = required_permissions(
        prefix, operation, params, role.ctx, client.meta.endpoint_url or ""
    )
    for action, resource in pairs:
        require(role, prefix, operation, action, resource)


def require(role: Role, prefix: str, operation: str, action: str, resource: str) -> None:
    """Raise AWS's AccessDenied (and record it on the role) unless `role` allows `action`."""
    if not role.allows(action, resource):
        role.denied.append((action, resource))
        log.warning(
            "IAM: %s denied %s on %s (role %s)", role.function, action, resource, role.role_name
        )
        raise access_denied(role, prefix, operation, action, resource)


@functools.cache
def install() -> None:
    """Route every botocore client (and the S3 transfer threads) through `check_call`; calls
    outside a function's role stay unchecked, so installing once per process is harmless."""
    from botocore import signers
    from botocore.client import BaseClient
    from s3transfer.futures import BoundedExecutor

    emit_api_params: Callable[..., Any] = BaseClient._emit_api_params

    def checked_emit_api_params(
        self: Any, api_params: Any, operation_model: Any, context: Any
    ) -> Any:
        # A presigned POST is built on CreateBucket's model; it is checked with its key below.
        if not (context.get("is_presign_request") and operation_model.name == "CreateBucket"):
            check_call(self, operation_model.name, api_params or {})
        return emit_api_params(self, api_params, operation_model, context)

    BaseClient._emit_api_params = checked_emit_api_params  # type: ignore[method-assign]

    # Client classes pick this function up when they are created: clients built after the
    # local cloud starts (memlayer builds its own at first use) are covered.
    presign_post: Callable[..., Any] = signers.generate_presigned_post

    def checked_presign_post(self: Any, Bucket: str, Key: str, *args: Any, **kwargs: Any) -> Any:
        check_call(self, "PutObject", {"Bucket": Bucket, "Key": Key})
        return presign_post(self, Bucket, Key, *args, **kwargs)

    signers.generate_presigned_post = checked_presign_post

    # upload_fileobj's transfer threads get botocore's context, not the caller's contextvars.
    submit: Callable[..., Any] = BoundedExecutor.submit

    def submit_in_context(self: Any, task: Any, tag: Any = None, block: bool = True) -> Any:
        return submit(self, _InContext(task, contextvars.copy_context()), tag, block)

    BoundedExecutor.submit = submit_in_context  # type: ignore[method-assign]


class _InContext:
    """A transfer task that runs in the submitting thread's contextvars."""

    def __init__(self, task: Any, context: contextvars.Context) -> None:
        self._task = task
        self._context = context

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._context.run(self._task, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def stack_roles(stack: Any, ws_endpoints: Mapping[str, tuple[str, str]]) -> tuple[dict, list[str]]:
    """Every function's role in `stack` (a `Stack`), as deployed; and any warnings."""
    resolver: Resolver = stack.resolver
    options = resolver.options
    expanded = expand_template(resolver.template, resolver.parameter_values, options.region)
    ctx = ArnContext(options.region, options.account_id, options.partition, dict(ws_endpoints))
    names = {lid: spec.name for lid, spec in stack.functions.items()}
    return function_roles(expanded, resolver, names, ctx)
