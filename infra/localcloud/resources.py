"""Create the template's data resources (tables, queues, buckets, topics) in moto."""

from __future__ import annotations

import json
import logging
from secrets import token_urlsafe
from typing import Any

from .stack import Stack

log = logging.getLogger("localcloud")

# CloudFormation AWS::SQS::Queue properties that are SQS queue attributes.
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _throughput(value: dict[str, Any] | None) -> dict[str, int] | None:
    if not value:
        return None
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def table_request(name: str, props: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation AWS::DynamoDB::Table properties -> CreateTable arguments."""
    billing = props.get("BillingMode") or (
        "PROVISIONED" if props.get("ProvisionedThroughput") else "PAY_PER_REQUEST"
    )
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput")) or {
            "ReadCapacityUnits": 5,
            "WriteCapacityUnits": 5,
        }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = []
        for index in props.get(key) or []:
            item = {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
            if key == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                item["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput")) or {
                    "ReadCapacityUnits": 5,
                    "WriteCapacityUnits": 5,
                }
            indexes.append(item)
        if indexes:
            request[key] = indexes
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    return request


def bucket_notification(props: dict[str, Any], warnings: list[str], where: str) -> dict:
    """CloudFormation NotificationConfiguration -> PutBucketNotificationConfiguration."""
    source = props.get("NotificationConfiguration") or {}
    out: dict[str, Any] = {}

    def filter_of(item: dict[str, Any]) -> dict[str, Any] | None:
        rules = ((item.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        if not rules:
            return None
        return {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}

    for cfn_key, api_key, arn_key, arn_prop in (
        ("QueueConfigurations", "QueueConfigurations", "QueueArn", "Queue"),
        ("TopicConfigurations", "TopicConfigurations", "TopicArn", "Topic"),
    ):
        items = []
        for item in source.get(cfn_key) or []:
            entry: dict[str, Any] = {arn_key: item[arn_prop], "Events": [item["Event"]]}
            key_filter = filter_of(item)
            if key_filter:
                entry["Filter"] = key_filter
            items.append(entry)
        if items:
            out[api_key] = items
    if source.get("LambdaConfigurations"):
        warnings.append(f"{where}: S3 -> Lambda notifications are not emulated locally")
    if source.get("EventBridgeConfiguration"):
        warnings.append(f"{where}: S3 -> EventBridge notifications are not emulated locally")
    return out


def create_resources(
    stack: Stack, session: Any, endpoint_url: str, *, only_missing: bool = False
) -> list[str]:
    """Create every table, queue, topic, secret and bucket of `stack` in moto. Returns warnings.

    With `only_missing`, resources that already exist (by name) are left as they are.
    """
    warnings: list[str] = []
    region = stack.resolver.options.region
    name_of = stack.resolver.physical_name

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url, region_name=region)

    tables, queues, buckets = dict(stack.tables), dict(stack.queues), dict(stack.buckets)
    if only_missing:
        existing_tables = set(client("dynamodb").list_tables().get("TableNames", []))
        tables = {k: v for k, v in tables.items() if name_of(k) not in existing_tables}
        existing_queues = {
            url.rsplit("/", 1)[-1] for url in client("sqs").list_queues().get("QueueUrls", [])
        }
        queues = {k: v for k, v in queues.items() if name_of(k) not in existing_queues}
        existing_buckets = {b["Name"] for b in client("s3").list_buckets().get("Buckets", [])}
        buckets = {k: v for k, v in buckets.items() if name_of(k) not in existing_buckets}

    if tables:
        dynamodb = client("dynamodb")
        for logical_id, props in tables.items():
            name = stack.resolver.physical_name(logical_id)
            dynamodb.create_table(**table_request(name, props))
            ttl = props.get("TimeToLiveSpecification") or {}
            if str(ttl.get("Enabled", "")).lower() == "true" and ttl.get("AttributeName"):
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={
                        "Enabled": True,
                        "AttributeName": ttl["AttributeName"],
                    },
                )

    if queues:
        sqs = client("sqs")
        # Create every queue first so redrive targets exist, then attach redrive policies.
        for logical_id, props in queues.items():
            attributes = {k: _attr(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
            sqs.create_queue(
                QueueName=stack.resolver.physical_name(logical_id), Attributes=attributes
            )
        for logical_id, props in queues.items():
            later = {
                k: _attr(props[k]) for k in ("RedrivePolicy", "RedriveAllowPolicy") if k in props
            }
            if later:
                sqs.set_queue_attributes(
                    QueueUrl=stack.resolver.queue_url(logical_id), Attributes=later
                )

    topics = [
        lid
        for lid, res in (stack.resolver.resources.items())
        if res.get("Type") == "AWS::SNS::Topic" and stack.resolver.resource_exists(lid)
    ]
    if topics:
        sns = client("sns")
        for logical_id in topics:
            sns.create_topic(Name=stack.resolver.physical_name(logical_id))

    secrets = [
        lid
        for lid, res in stack.resolver.resources.items()
        if res.get("Type") == "AWS::SecretsManager::Secret" and stack.resolver.resource_exists(lid)
    ]
    if secrets:
        secretsmanager = client("secretsmanager")
        existing = (
            {s["Name"] for s in secretsmanager.list_secrets().get("SecretList", [])}
            if only_missing
            else set()
        )
        for logical_id in secrets:
            name = stack.resolver.physical_name(logical_id)
            if name in existing:
                continue
            props = stack.resolver.resolve(stack.resolver.resources[logical_id].get("Properties"))
            value = (props or {}).get("SecretString")
            if value is None:  # GenerateSecretString
                value = token_urlsafe(32)
            secretsmanager.create_secret(Name=name, SecretString=str(value))

    if buckets:
        s3 = client("s3")
        for logical_id, props in buckets.items():
            name = stack.resolver.physical_name(logical_id)
            if region == "us-east-1":
                s3.create_bucket(Bucket=name)
            else:
                s3.create_bucket(
                    Bucket=name, CreateBucketConfiguration={"LocationConstraint": region}
                )
            cors_rules = (props.get("CorsConfiguration") or {}).get("CorsRules") or []
            if cors_rules:
                s3.put_bucket_cors(
                    Bucket=name,
                    CORSConfiguration={"CORSRules": [_cors_rule(r) for r in cors_rules]},
                )
            versioning = (props.get("VersioningConfiguration") or {}).get("Status")
            if versioning:
                s3.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": versioning}
                )
            notification = bucket_notification(props, warnings, logical_id)
            if notification:
                s3.put_bucket_notification_configuration(
                    Bucket=name, NotificationConfiguration=notification
                )
    return warnings


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AllowedMethods": rule["AllowedMethods"],
        "AllowedOrigins": rule["AllowedOrigins"],
    }
    for cfn_key, api_key in (
        ("AllowedHeaders", "AllowedHeaders"),
        ("ExposedHeaders", "ExposeHeaders"),
        ("Id", "ID"),
    ):
        if rule.get(cfn_key):
            out[api_key] = rule[cfn_key]
    if rule.get("MaxAge") is not None:
        out["MaxAgeSeconds"] = int(rule["MaxAge"])
    return out
