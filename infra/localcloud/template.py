"""Read a SAM/CloudFormation template and resolve it against local values.

`load_template()` parses YAML (or JSON) with the CloudFormation short-form tags. `Resolver`
evaluates intrinsic functions (Ref, GetAtt, Sub, Join, If, ...) with the local pseudo
parameters and deterministic physical ids, so a Ref of a queue is its local URL, a GetAtt
of its Arn the ARN moto will report, and so on. Nothing here is specific to one template.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "memlayer-local"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"

PARAM_ENV_PREFIX = "LOCALCLOUD_PARAM_"


class TemplateError(ValueError):
    """The template cannot be read or an intrinsic cannot be resolved."""


class _NoValue:
    """`AWS::NoValue`: removes the key or list item it is assigned to."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# --------------------------------------------------------------------------- YAML loading


class CfnYamlLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form tags and keeps dates as strings."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if name == "Ref":
        return {"Ref": value}
    if name == "Condition":
        return {"Condition": value}
    if name == "GetAtt" and isinstance(value, str):
        logical, _, attr = value.partition(".")
        return {"Fn::GetAtt": [logical, attr]}
    return {f"Fn::{name}": value}


def _construct_timestamp_as_str(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


CfnYamlLoader.add_multi_constructor("!", _construct_tag)
CfnYamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_as_str)


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a template file (YAML with short-form tags, or JSON)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=CfnYamlLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


# --------------------------------------------------------------------------- helpers


def api_id_for(logical_id: str) -> str:
    """A stable 10-character API id (like API Gateway's) for a logical id."""
    digest = hashlib.sha256(logical_id.encode()).digest()
    return base64.b32encode(digest).decode().lower()[:10]


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def merge_globals(global_props: Mapping[str, Any], local_props: Mapping[str, Any]) -> dict:
    """SAM Globals semantics: maps merge (recursively), lists append, scalars are replaced."""
    merged: dict[str, Any] = copy.deepcopy(dict(global_props))
    for key, value in local_props.items():
        if key not in merged:
            merged[key] = copy.deepcopy(value)
            continue
        current = merged[key]
        if _is_plain_map(current) and _is_plain_map(value):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_plain_map(value: Any) -> bool:
    """A dict that is not an intrinsic function call."""
    if not isinstance(value, dict):
        return False
    if len(value) == 1:
        (key,) = value
        if key == "Ref" or key.startswith("Fn::") or key == "Condition":
            return False
    return True


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """Parse `sam deploy`-style overrides: 'Key=Value Other=Value' or 'Key=Value,...'."""
    out: dict[str, str] = {}
    for token in re.split(r"\s+", text.strip()):
        if not token:
            continue
        key, sep, value = token.partition("=")
        if not sep:
            raise TemplateError(f"bad parameter override {token!r} (expected Key=Value)")
        out[key.removeprefix("ParameterKey=")] = value
    return out


# --------------------------------------------------------------------------- resolver

# Property that names a resource's physical id, per type.
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::Events::EventBus": "Name",
    "AWS::Scheduler::ScheduleGroup": "Name",
    "AWS::SSM::Parameter": "Name",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Kinesis::Stream": "Name",
}

_API_TYPES = {
    "AWS::Serverless::HttpApi",
    "AWS::Serverless::Api",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGateway::RestApi",
}
_FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}


@dataclass
class ResolverOptions:
    region: str = REGION
    account_id: str = ACCOUNT_ID
    stack_name: str = STACK_NAME
    partition: str = PARTITION
    # Base URL of the AWS endpoint (moto) used in queue URLs; real-looking if not given.
    aws_endpoint_url: str | None = None


@dataclass
class Resolver:
    """Evaluates intrinsic functions of one template against local values."""

    template: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    options: ResolverOptions = field(default_factory=ResolverOptions)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = self.template.get("Resources") or {}
        self.conditions_src: dict[str, Any] = self.template.get("Conditions") or {}
        self.mappings: dict[str, Any] = self.template.get("Mappings") or {}
        self._conditions: dict[str, bool] = {}
        self._physical: dict[str, Any] = {}
        self._resolving: set[str] = set()
        self.parameter_values = self._resolve_parameters(self.parameters)
        self.implicit: dict[str, str] = self._implicit_resources()

    # ----------------------------------------------------------------- parameters

    def _resolve_parameters(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        declared: dict[str, Any] = self.template.get("Parameters") or {}
        unknown = set(overrides) - set(declared)
        if unknown:
            self.warnings.append(f"parameter overrides not in the template: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            spec = spec or {}
            if name in overrides:
                raw: Any = overrides[name]
            elif PARAM_ENV_PREFIX + name in os.environ:
                raw = os.environ[PARAM_ENV_PREFIX + name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default and no override")
            ptype = str(spec.get("Type", "String"))
            if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
                if isinstance(raw, str):
                    value: Any = [part.strip() for part in raw.split(",")] if raw else []
                else:
                    value = [str(part) for part in raw]
            else:
                value = "" if raw is None else str(raw)
                if isinstance(raw, bool):
                    value = str(raw).lower()
            allowed = spec.get("AllowedValues")
            if allowed and isinstance(value, str) and value not in [str(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={value!r} not in AllowedValues {allowed}")
            values[name] = value
        return values

    # ----------------------------------------------------------------- conditions

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self.conditions_src:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(self.conditions_src[name]))
        return self._conditions[name]

    def resource_exists(self, logical_id: str) -> bool:
        resource = self.resources.get(logical_id)
        if resource is None:
            return logical_id in self.implicit
        cond = resource.get("Condition")
        return True if cond is None else self.condition(cond)

    # ----------------------------------------------------------------- implicit (SAM) ids

    def _implicit_resources(self) -> dict[str, str]:
        """Resources SAM generates that templates may reference (ServerlessHttpApi, roles)."""
        implicit: dict[str, str] = {}
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            props = resource.get("Properties") or {}
            if "Role" not in props:
                implicit[f"{logical_id}Role"] = "AWS::IAM::Role"
            for event in (props.get("Events") or {}).values():
                if not isinstance(event, dict):
                    continue
                eprops = event.get("Properties") or {}
                if event.get("Type") == "HttpApi" and "ApiId" not in eprops:
                    implicit["ServerlessHttpApi"] = "AWS::Serverless::HttpApi"
                if event.get("Type") == "Api" and "RestApiId" not in eprops:
                    implicit["ServerlessRestApi"] = "AWS::Serverless::Api"
        return implicit

    def resource_type(self, logical_id: str) -> str:
        if logical_id in self.resources:
            return str(self.resources[logical_id].get("Type", ""))
        return self.implicit.get(logical_id, "")

    # ----------------------------------------------------------------- physical ids

    def physical_name(self, logical_id: str) -> str:
        """The resource's name: its name property if set, else '<stack>-<LogicalId>'."""
        if logical_id in self._physical:
            return self._physical[logical_id]
        if logical_id in self._resolving:
            raise TemplateError(f"circular reference while naming {logical_id}")
        self._resolving.add(logical_id)
        try:
            rtype = self.resource_type(logical_id)
            props = (self.resources.get(logical_id) or {}).get("Properties") or {}
            name_prop = _NAME_PROPERTY.get(rtype)
            name: Any = None
            if name_prop and name_prop in props:
                name = self.resolve(props[name_prop])
            if name is None or name is NO_VALUE:
                name = f"{self.options.stack_name}-{logical_id}"
                if rtype == "AWS::S3::Bucket":
                    name = re.sub(r"[^a-z0-9.-]", "-", name.lower())[:63]
                if rtype == "AWS::SQS::Queue" and _truthy(props.get("FifoQueue")):
                    name += ".fifo"
                if rtype in _FUNCTION_TYPES:
                    name = name[:64]
            self._physical[logical_id] = str(name)
            return str(name)
        finally:
            self._resolving.discard(logical_id)

    def arn(self, logical_id: str) -> str:
        o = self.options
        rtype = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        base = f"arn:{o.partition}"
        if rtype == "AWS::SQS::Queue":
            return f"{base}:sqs:{o.region}:{o.account_id}:{name}"
        if rtype == "AWS::DynamoDB::Table":
            return f"{base}:dynamodb:{o.region}:{o.account_id}:table/{name}"
        if rtype == "AWS::S3::Bucket":
            return f"{base}:s3:::{name}"
        if rtype == "AWS::SNS::Topic":
            return f"{base}:sns:{o.region}:{o.account_id}:{name}"
        if rtype in _FUNCTION_TYPES:
            return f"{base}:lambda:{o.region}:{o.account_id}:function:{name}"
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return f"{base}:lambda:{o.region}:{o.account_id}:layer:{name}:1"
        if rtype == "AWS::Logs::LogGroup":
            return f"{base}:logs:{o.region}:{o.account_id}:log-group:{name}:*"
        if rtype == "AWS::IAM::Role":
            return f"{base}:iam::{o.account_id}:role/{name}"
        if rtype == "AWS::SecretsManager::Secret":
            # A partial ARN (no random suffix): moto finds the secret by it, and IAM policies
            # that `!Ref` the secret name the same string.
            return f"{base}:secretsmanager:{o.region}:{o.account_id}:secret:{name}"
        if rtype in _API_TYPES:
            return f"{base}:apigateway:{o.region}::/apis/{api_id_for(logical_id)}"
        service = rtype.split("::")[1].lower() if rtype.count("::") >= 2 else "local"
        return f"{base}:{service}:{o.region}:{o.account_id}:{name}"

    def queue_url(self, logical_id: str) -> str:
        o = self.options
        endpoint = (o.aws_endpoint_url or f"https://sqs.{o.region}.{URL_SUFFIX}").rstrip("/")
        return f"{endpoint}/{o.account_id}/{self.physical_name(logical_id)}"

    def ref(self, name: str) -> Any:
        o = self.options
        pseudo = {
            "AWS::Region": o.region,
            "AWS::AccountId": o.account_id,
            "AWS::StackName": o.stack_name,
            "AWS::Partition": o.partition,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackId": (
                f"arn:{o.partition}:cloudformation:{o.region}:{o.account_id}:stack/"
                f"{o.stack_name}/00000000-0000-0000-0000-{_short_hash(o.stack_name, 12)}"
            ),
            "AWS::NotificationARNs": [],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameter_values:
            return self.parameter_values[name]
        rtype = self.resource_type(name)
        if not rtype:
            raise TemplateError(f"Ref to unknown parameter or resource {name!r}")
        if not self.resource_exists(name):
            self.warnings.append(f"Ref to {name}, whose Condition is false")
        if rtype == "AWS::SQS::Queue":
            return self.queue_url(name)
        if rtype in (
            "AWS::SNS::Topic",
            "AWS::SecretsManager::Secret",
            "AWS::Serverless::LayerVersion",
            "AWS::Lambda::LayerVersion",
        ):
            return self.arn(name)
        if rtype in _API_TYPES:
            return api_id_for(name)
        if rtype.startswith("AWS::ApiGatewayV2::") or rtype.startswith("AWS::ApiGateway::"):
            if rtype.endswith("::Stage"):
                props = (self.resources.get(name) or {}).get("Properties") or {}
                return self.resolve(props.get("StageName", name))
            return _short_hash(name, 7)
        if rtype == "AWS::SQS::QueuePolicy" or rtype == "AWS::Lambda::Permission":
            return f"{o.stack_name}-{name}-{_short_hash(name)}"
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        rtype = self.resource_type(logical_id)
        if not rtype:
            raise TemplateError(f"GetAtt of unknown resource {logical_id!r}")
        o = self.options
        name = self.physical_name(logical_id)
        if attribute == "Arn":
            return self.arn(logical_id)
        if rtype == "AWS::SQS::Queue":
            if attribute == "QueueName":
                return name
            if attribute == "QueueUrl":
                return self.queue_url(logical_id)
        if rtype == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            return f"{self.arn(logical_id)}/stream/1970-01-01T00:00:00.000"
        if rtype == "AWS::S3::Bucket":
            if attribute in ("DomainName", "RegionalDomainName"):
                return f"{name}.s3.{o.region}.{URL_SUFFIX}"
            if attribute == "WebsiteURL":
                return f"http://{name}.s3-website-{o.region}.{URL_SUFFIX}"
        if rtype == "AWS::SNS::Topic":
            if attribute == "TopicArn":
                return self.arn(logical_id)
            if attribute == "TopicName":
                return name
        if rtype in _API_TYPES:
            if attribute == "ApiEndpoint":
                api_type = self._api_protocol(logical_id)
                scheme = "wss" if api_type == "WEBSOCKET" else "https"
                return f"{scheme}://{api_id_for(logical_id)}.execute-api.{o.region}.{URL_SUFFIX}"
            if attribute in ("ApiId", "RootResourceId"):
                return api_id_for(logical_id)
        if attribute in ("Name", "FunctionName", "RoleId", "TableName", "BucketName"):
            return name
        self.warnings.append(f"GetAtt {logical_id}.{attribute} has no local value; using a stub")
        return f"{name}-{attribute}"

    def _api_protocol(self, logical_id: str) -> str:
        props = (self.resources.get(logical_id) or {}).get("Properties") or {}
        if self.resource_type(logical_id) == "AWS::ApiGatewayV2::Api":
            return str(self.resolve(props.get("ProtocolType", "HTTP")))
        return "HTTP"

    # ----------------------------------------------------------------- intrinsics

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            out = [self.resolve(item) for item in value]
            return [item for item in out if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            fn = self._INTRINSICS.get(key)
            if fn is not None:
                return fn(self, arg)
            if key == "Condition" and isinstance(arg, str) and arg in self.conditions_src:
                return self.condition(arg)
        out_map = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out_map.items() if v is not NO_VALUE}

    def _fn_ref(self, arg: Any) -> Any:
        return self.ref(str(self.resolve(arg)))

    def _fn_get_att(self, arg: Any) -> Any:
        arg = self.resolve(arg)
        if isinstance(arg, str):
            logical, _, attr = arg.partition(".")
        else:
            logical, attr = str(arg[0]), ".".join(str(a) for a in arg[1:])
        return self.get_att(logical, attr)

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}
        if not isinstance(text, str):
            raise TemplateError(f"Fn::Sub needs a string, got {text!r}")

        def replace(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            inner = inner.strip()
            if inner in variables:
                value = variables[inner]
            elif "." in inner and not inner.startswith("AWS::"):
                logical, _, attr = inner.partition(".")
                value = self.get_att(logical, attr)
            else:
                value = self.ref(inner)
            if isinstance(value, list):
                raise TemplateError(f"Fn::Sub variable {inner} is a list")
            return str(value)

        return re.sub(r"\$\{([^}]*)\}", replace, text)

    def _fn_join(self, arg: Any) -> str:
        delimiter, items = arg[0], self.resolve(arg[1])
        if not isinstance(items, list):
            raise TemplateError(f"Fn::Join needs a list, got {items!r}")
        return str(delimiter).join(str(self.resolve(item)) for item in items)

    def _fn_select(self, arg: Any) -> Any:
        index, items = int(self.resolve(arg[0])), self.resolve(arg[1])
        return items[index]

    def _fn_split(self, arg: Any) -> list[str]:
        delimiter, text = arg[0], self.resolve(arg[1])
        return str(text).split(str(delimiter))

    def _fn_if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false)

    def _fn_equals(self, arg: Any) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return str(left) == str(right) if not isinstance(left, list) else left == right

    def _fn_not(self, arg: Any) -> bool:
        return not self._truth(arg[0] if isinstance(arg, list) else arg)

    def _fn_and(self, arg: Any) -> bool:
        return all(self._truth(a) for a in arg)

    def _fn_or(self, arg: Any) -> bool:
        return any(self._truth(a) for a in arg)

    def _fn_condition(self, arg: Any) -> bool:
        return self.condition(str(arg))

    def _fn_contains(self, arg: Any) -> bool:  # Rules only
        items, value = self.resolve(arg[0]), self.resolve(arg[1])
        return str(value) in [str(item) for item in items]

    def failed_rules(self) -> list[str]:
        """The template's `Rules` that refuse these parameters, as CloudFormation would."""
        failures = []
        for name, rule in (self.template.get("Rules") or {}).items():
            when = rule.get("RuleCondition")
            if when is not None and not self._truth(when):
                continue
            for assertion in rule.get("Assertions") or []:
                if not self._truth(assertion.get("Assert")):
                    failures.append(f"{name}: {assertion.get('AssertDescription', 'refused')}")
        return failures

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"])
        return bool(self.resolve(value))

    def _fn_find_in_map(self, arg: Any) -> Any:
        map_name, top, second = (self.resolve(a) for a in arg[:3])
        try:
            return self.resolve(self.mappings[map_name][top][second])
        except KeyError:
            if len(arg) > 3 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self.resolve(arg[3]["DefaultValue"])
            raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second} not found") from None

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(str(self.resolve(arg)).encode()).decode()

    def _fn_get_azs(self, arg: Any) -> list[str]:
        region = self.resolve(arg) or self.options.region
        return [f"{region}{suffix}" for suffix in "abc"]

    def _fn_import_value(self, arg: Any) -> str:
        name = self.resolve(arg)
        self.warnings.append(f"Fn::ImportValue {name} has no local value; using a stub")
        return f"imported-{name}"

    def _fn_to_json_string(self, arg: Any) -> str:
        return json.dumps(self.resolve(arg), separators=(",", ":"))

    def _fn_length(self, arg: Any) -> int:
        return len(self.resolve(arg))

    _INTRINSICS: ClassVar[dict[str, Any]] = {
        "Ref": _fn_ref,
        "Fn::GetAtt": _fn_get_att,
        "Fn::Sub": _fn_sub,
        "Fn::Join": _fn_join,
        "Fn::Select": _fn_select,
        "Fn::Split": _fn_split,
        "Fn::If": _fn_if,
        "Fn::Equals": _fn_equals,
        "Fn::Not": _fn_not,
        "Fn::And": _fn_and,
        "Fn::Or": _fn_or,
        "Fn::Condition": _fn_condition,
        "Fn::Contains": _fn_contains,
        "Fn::FindInMap": _fn_find_in_map,
        "Fn::Base64": _fn_base64,
        "Fn::GetAZs": _fn_get_azs,
        "Fn::ImportValue": _fn_import_value,
        "Fn::ToJsonString": _fn_to_json_string,
        "Fn::Length": _fn_length,
    }


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)
