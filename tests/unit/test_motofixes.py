"""The local cloud's moto DynamoDB fixes keep moto's answers while touching only the items and
the partition a request names."""

from __future__ import annotations

import base64
import itertools
import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.localcloud.motofixes import (
    patch_moto_dynamodb_scale,
    patch_moto_random_ids,
    patch_moto_sqs_scale,
)

TABLE = "fixes"


@pytest.fixture
def dynamodb() -> Any:
    patch_moto_dynamodb_scale()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _backend_table() -> Any:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE]


def _put(client: Any, pk: str, sk: str, **attrs: str) -> None:
    item = {"PK": {"S": pk}, "SK": {"S": sk}, **{k: {"S": v} for k, v in attrs.items()}}
    client.put_item(TableName=TABLE, Item=item)


def _get(client: Any, pk: str, sk: str) -> dict[str, Any] | None:
    key = {"PK": {"S": pk}, "SK": {"S": sk}}
    return client.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")


def test_failed_transaction_rolls_back_only_the_items_it_touched(dynamodb):
    _put(dynamodb, "U#1", "PROFILE", n="1")
    _put(dynamodb, "U#1", "OLD", n="old")
    _put(dynamodb, "U#2", "OTHER", n="x")
    _put(dynamodb, "U#3", "UNTOUCHED", n="y")
    table = _backend_table()
    untouched = table.items[next(k for k in table.items if k.value == "U#3")]
    untouched_item = next(iter(untouched.values()))

    with pytest.raises(ClientError) as failed:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "U#1"}, "SK": {"S": "NEW"}}}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": {"PK": {"S": "U#1"}, "SK": {"S": "PROFILE"}},
                        "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"S": "2"}},
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": {"PK": {"S": "U#1"}, "SK": {"S": "OLD"}}}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": {"PK": {"S": "U#2"}, "SK": {"S": "OTHER"}},
                        "ConditionExpression": "n = :want",
                        "ExpressionAttributeValues": {":want": {"S": "not-x"}},
                    }
                },
            ]
        )
    assert failed.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in failed.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert _get(dynamodb, "U#1", "NEW") is None
    assert _get(dynamodb, "U#1", "PROFILE")["n"] == {"S": "1"}
    assert _get(dynamodb, "U#1", "OLD")["n"] == {"S": "old"}
    # Restoring a deep copy of the table would have replaced every item object.
    assert next(iter(untouched.values())) is untouched_item
    assert _backend_table() is table
    keys = [i["SK"]["S"] for i in _query(dynamodb, "PK = :pk", {":pk": "U#1"})]
    assert keys == ["OLD", "PROFILE"]


def test_successful_and_invalid_transactions(dynamodb):
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "U#1"}, "SK": {"S": "A"}}}},
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": {"PK": {"S": "U#1"}, "SK": {"S": "COUNT"}},
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    assert _get(dynamodb, "U#1", "COUNT")["n"] == {"N": "1"}
    same_item = {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "U#1"}, "SK": {"S": "B"}}}}
    with pytest.raises(ClientError) as invalid:
        dynamodb.transact_write_items(TransactItems=[same_item, same_item])
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    assert _get(dynamodb, "U#1", "B") is None


def _query(client: Any, condition: str, values: dict[str, str], **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    start: dict[str, Any] | None = None
    while True:
        page = client.query(
            TableName=TABLE,
            KeyConditionExpression=condition,
            ExpressionAttributeValues={k: {"S": v} for k, v in values.items()},
            **kwargs,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def test_partition_queries_match_moto_on_every_key_condition(dynamodb):
    from moto.dynamodb.models.table import Table

    for user, kind, n in itertools.product(("U#1", "U#2"), ("MEM#", "VEC#", "CHG#"), range(12)):
        _put(dynamodb, user, f"{kind}{n:03d}", kind=kind)
    # Writes after the partition's sorted keys exist must keep them in step.
    _query(dynamodb, "PK = :pk", {":pk": "U#1"})
    _put(dynamodb, "U#1", "MEM#005a", kind="MEM#")
    dynamodb.delete_item(TableName=TABLE, Key={"PK": {"S": "U#1"}, "SK": {"S": "MEM#007"}})
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "U#1"}, "SK": {"S": "CHG#x"}}}},
            {"Delete": {"TableName": TABLE, "Key": {"PK": {"S": "U#1"}, "SK": {"S": "VEC#001"}}}},
        ]
    )

    conditions = [
        ("PK = :pk", {}),
        ("PK = :pk AND SK = :a", {":a": "MEM#005a"}),
        ("PK = :pk AND begins_with(SK, :a)", {":a": "MEM#"}),
        ("PK = :pk AND SK BETWEEN :a AND :b", {":a": "CHG#004", ":b": "MEM#003"}),
        ("PK = :pk AND SK < :a", {":a": "MEM#"}),
        ("PK = :pk AND SK <= :a", {":a": "MEM#005a"}),
        ("PK = :pk AND SK > :a", {":a": "MEM#010"}),
        ("PK = :pk AND SK >= :a", {":a": "VEC#011"}),
        ("PK = :pk AND begins_with(SK, :a)", {":a": "NONE#"}),
    ]
    variants: list[dict[str, Any]] = [
        {},
        {"Limit": 5},
        {"Limit": 4, "ScanIndexForward": False},
        {"Limit": 3, "FilterExpression": "kind = :k", "ExpressionAttributeValues": {}},
    ]
    patched = Table.query
    checked = 0
    for (condition, extra), variant in itertools.product(conditions, variants):
        values = {":pk": "U#1", **extra}
        kwargs = dict(variant)
        if "FilterExpression" in kwargs:
            values[":k"] = "MEM#"
            kwargs.pop("ExpressionAttributeValues")
        fast = _query(dynamodb, condition, values, **kwargs)
        Table.query = patched._original  # moto's own query, walking the table
        try:
            slow = _query(dynamodb, condition, values, **kwargs)
        finally:
            Table.query = patched
        assert fast == slow, (condition, variant)
        checked += bool(slow)
    assert checked > 25  # most combinations return items: the comparison is not vacuous


def _scan_pages(client: Any, **kwargs: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = client.scan(
            TableName=TABLE, **kwargs, **({"ExclusiveStartKey": start} if start else {})
        )
        pages.append([page["Items"], page.get("LastEvaluatedKey"), page["ScannedCount"]])
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_table_scans_match_moto_page_by_page(dynamodb):
    from moto.dynamodb.models.table import Table

    for user, kind, n in itertools.product(("U#1", "U#2", "U#10", "A"), ("MEM#", "VEC#"), range(9)):
        _put(dynamodb, user, f"{kind}{n:03d}", kind=kind, pad="x" * 200 * n)
    _scan_pages(dynamodb)  # sorted keys exist: later writes must keep them in step
    _put(dynamodb, "U#1", "MEM#004a", kind="MEM#")
    _put(dynamodb, "B", "ONLY", kind="MEM#")
    dynamodb.delete_item(TableName=TABLE, Key={"PK": {"S": "U#2"}, "SK": {"S": "VEC#003"}})

    variants: list[dict[str, Any]] = [
        {},
        {"Limit": 7},
        {"Limit": 1},
        {
            "Limit": 5,
            "FilterExpression": "kind = :k",
            "ExpressionAttributeValues": {":k": {"S": "VEC#"}},
        },
        {"FilterExpression": "kind = :k", "ExpressionAttributeValues": {":k": {"S": "MEM#"}}},
        {"Limit": 4, "ProjectionExpression": "PK, SK"},
        {"Limit": 3, "Segment": 1, "TotalSegments": 2},
        {
            "Limit": 4,
            "ScanFilter": {
                "kind": {"AttributeValueList": [{"S": "VEC#"}], "ComparisonOperator": "EQ"}
            },
        },
    ]
    patched = Table.scan
    for variant in variants:
        fast = _scan_pages(dynamodb, **variant)
        Table.scan = patched._original  # moto's own scan, sorting the table per page
        try:
            slow = _scan_pages(dynamodb, **variant)
        finally:
            Table.scan = patched
        assert fast == slow, variant
        assert sum(len(items) for items, _, _ in slow) > 0
    assert len(_scan_pages(dynamodb, Limit=7)) > 5  # paged: start keys were exercised


def test_a_remembered_update_expression_applies_to_each_item_with_its_own_values(dynamodb):
    expression = "ADD n :one SET tags = list_append(if_not_exists(tags, :empty), :t) REMOVE gone"
    _put(dynamodb, "U#1", "A", gone="x")
    for sk, tag in (("A", "first"), ("B", "second"), ("A", "third")):
        dynamodb.update_item(
            TableName=TABLE,
            Key={"PK": {"S": "U#1"}, "SK": {"S": sk}},
            UpdateExpression=expression,
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":empty": {"L": []},
                ":t": {"L": [{"S": tag}]},
            },
        )
    assert _get(dynamodb, "U#1", "A") == {
        "PK": {"S": "U#1"},
        "SK": {"S": "A"},
        "n": {"N": "2"},
        "tags": {"L": [{"S": "first"}, {"S": "third"}]},
    }
    assert _get(dynamodb, "U#1", "B")["tags"] == {"L": [{"S": "second"}]}
    for _ in range(2):  # a refused expression is refused every time
        with pytest.raises(ClientError) as refused:
            dynamodb.update_item(
                TableName=TABLE,
                Key={"PK": {"S": "U#1"}, "SK": {"S": "A"}},
                UpdateExpression="SET n = n + :one SET m = :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_requests_are_parsed_as_moto_parses_them(dynamodb):
    from moto.core.parse import BaseJSONParser

    rich = {
        "s": {"S": "text"},
        "empty": {"S": ""},
        "n": {"N": "-3.25"},
        "b": {"B": b"\x00\xffbytes"},
        "ss": {"SS": ["x", "y"]},
        "ns": {"NS": ["1", "2"]},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "m": {"M": {"k": {"S": "v"}, "nested": {"M": {"l": {"L": [{"B": b"z"}, {"N": "7"}]}}}}},
        "l": {"L": [{"S": "a"}, {"NULL": True}, {"BOOL": False}, {"L": []}, {"M": {}}]},
        "yes": {"BOOL": True},
        "null": {"NULL": True},
    }
    patched = BaseJSONParser._parse_structure

    def write(sk: str) -> list[Any]:
        key = {"PK": {"S": "U#P"}, "SK": {"S": sk}}
        dynamodb.put_item(TableName=TABLE, Item={**key, **rich})
        dynamodb.update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET added = :b, n = n + :one",
            ConditionExpression="b = :was AND m.k = :v",
            ExpressionAttributeValues={
                ":b": {"BS": [b"\x03"]},
                ":one": {"N": "1"},
                ":was": {"B": b"\x00\xffbytes"},
                ":v": {"S": "v"},
            },
        )
        page = dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="PK = :pk AND SK = :sk",
            FilterExpression="contains(bs, :one_b)",
            ExpressionAttributeValues={
                ":pk": {"S": "U#P"},
                ":sk": {"S": sk},
                ":one_b": {"B": b"\x01"},
            },
        )
        item = _get(dynamodb, "U#P", sk)
        assert item is not None
        return [{k: v for k, v in item.items() if k != "SK"}, len(page["Items"])]

    fast = write("FAST")
    BaseJSONParser._parse_structure = patched._original  # moto's own parser
    try:
        slow = write("SLOW")
    finally:
        BaseJSONParser._parse_structure = patched
    assert fast == slow
    assert fast[0]["b"] == {"B": b"\x00\xffbytes"} and fast[0]["n"] == {"N": "-2.25"}
    assert fast[1] == 1


def test_update_expressions_validated_on_a_cloned_tree_do_what_moto_does(dynamodb):
    from moto.dynamodb.parsing import validators

    base = {
        "n": {"N": "5"},
        "l": {"L": [{"S": "a"}, {"N": "1"}]},
        "m": {"M": {"note": {"S": "x"}, "deep": {"M": {"k": {"N": "2"}}}}},
        "ss": {"SS": ["a", "b"]},
        "gone": {"S": "bye"},
    }
    updates = [
        ("SET n = n + :one, #x = :s", {"#x": "renamed"}),
        ("SET l = list_append(l, :l), m.note = :s REMOVE gone", None),
        ("SET m.deep.k = if_not_exists(m.deep.k, :one) + :one, l[0] = :s", None),
        ("ADD n :one, ss :ss SET fresh = if_not_exists(fresh, :s)", None),
        ("DELETE ss :del", None),
        ("SET l = list_append(:l, l) REMOVE l[1], m.deep", None),
        ("SET n = n - :one, a1 = :one, a2 = :s", None),
        ("SET n = :one SET m = :one", None),  # refused: two SET clauses
        ("SET PK = :s", None),  # refused: a key attribute
        ("SET absent.path = :s", None),  # refused: the path does not exist
    ]
    values = {
        ":one": {"N": "1"},
        ":s": {"S": "v"},
        ":l": {"L": [{"S": "z"}]},
        ":ss": {"SS": ["c"]},
        ":del": {"SS": ["a"]},
    }
    patched = validators.deepcopy

    def run(sk: str) -> list[Any]:
        dynamodb.put_item(TableName=TABLE, Item={"PK": {"S": "U#1"}, "SK": {"S": sk}, **base})
        outcomes: list[Any] = []
        for expression, names in updates:
            used = {k: v for k, v in values.items() if k in expression}
            try:
                dynamodb.update_item(
                    TableName=TABLE,
                    Key={"PK": {"S": "U#1"}, "SK": {"S": sk}},
                    UpdateExpression=expression,
                    ExpressionAttributeValues=used,
                    **({"ExpressionAttributeNames": names} if names else {}),
                )
                item = _get(dynamodb, "U#1", sk)
                assert item is not None
                outcomes.append({k: v for k, v in item.items() if k != "SK"})
            except ClientError as exc:
                outcomes.append(exc.response["Error"])
        return outcomes

    fast = run("CLONED")
    validators.deepcopy = patched._original  # moto's own deep copy
    try:
        slow = run("DEEPCOPIED")
    finally:
        validators.deepcopy = patched
    assert fast == slow
    assert sum("Code" in outcome for outcome in fast) == 3  # the refusals are refused


def test_responses_are_serialized_as_moto_serializes_them(dynamodb):
    import json

    from moto.core.serialize import BaseJSONSerializer

    every_type = {
        "PK": {"S": "U#1"},
        "SK": {"S": "ALL"},
        "s": {"S": "text ü"},
        "empty": {"S": ""},
        "n": {"N": "-12.5"},
        "b": {"B": bytes(range(256))},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"\x00\x01", b"\xff"]},
        "m": {"M": {"inner": {"B": b"\x02"}, "deep": {"M": {"x": {"N": "1"}}}, "none": {"M": {}}}},
        "l": {"L": [{"S": "x"}, {"L": []}, {"NULL": True}, {"BOOL": False}, {"B": b"\x03"}]},
        "null": {"NULL": True},
        "bool": {"BOOL": True},
    }
    dynamodb.put_item(TableName=TABLE, Item=every_type)
    _put(dynamodb, "U#1", "OTHER", kind="x")
    bodies: list[Any] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(json.loads(response_dict["body"]))

    dynamodb.meta.events.register("before-parse.dynamodb", keep)
    keys = {"PK": {"S": "U#1"}, "SK": {"S": "ALL"}}

    def calls() -> list[Any]:
        bodies.clear()
        dynamodb.get_item(TableName=TABLE, Key=keys)
        dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "U#1"}},
            Limit=1,
        )
        dynamodb.batch_get_item(RequestItems={TABLE: {"Keys": [keys]}})
        dynamodb.scan(TableName=TABLE, ProjectionExpression="PK, m.inner, l[4]")
        dynamodb.update_item(
            TableName=TABLE,
            Key=keys,
            UpdateExpression="SET s = :s",
            ExpressionAttributeValues={":s": {"S": "text ü"}},
            ReturnValues="ALL_OLD",
        )
        with pytest.raises(ClientError):
            dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": TABLE,
                            "Key": keys,
                            "ConditionExpression": "attribute_not_exists(PK)",
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    }
                ]
            )
        dynamodb.describe_table(TableName=TABLE)
        return list(bodies)

    fast = calls()
    patched: Any = BaseJSONSerializer._serialize_type_structure
    BaseJSONSerializer._serialize_type_structure = patched._original  # moto's own
    try:
        slow = calls()
    finally:
        BaseJSONSerializer._serialize_type_structure = patched
    assert len(fast) == len(slow) == 7
    for got, want in zip(fast, slow, strict=True):
        got.get("Table", {}).pop("CreationDateTime", None)
        want.get("Table", {}).pop("CreationDateTime", None)
        assert got == want
    assert fast[0]["Item"]["b"] == {"B": base64.b64encode(bytes(range(256))).decode()}
    assert "CancellationReasons" in fast[5] and fast[5]["CancellationReasons"][0]["Item"]


# ------------------------------------------------------------------------------------- SQS


@pytest.fixture
def sqs() -> Any:
    patch_moto_sqs_scale()
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def test_queue_attributes_count_visible_in_flight_and_delayed_messages(sqs):
    url = sqs.create_queue(QueueName="counts", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    assert len(received) == 2

    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNTS)["Attributes"]
    assert attrs == dict(zip(COUNTS, ["3", "2", "1"], strict=True))
    one = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert one["Attributes"] == {"VisibilityTimeout": "60"}
    everything = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert {k: everything[k] for k in COUNTS} == attrs and "QueueArn" in everything
    with pytest.raises(ClientError) as refused:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])
    assert refused.value.response["Error"]["Code"] == "InvalidAttributeName"


def test_queue_attributes_read_lazily_keep_moto_s_names_order_and_values(sqs):
    dlq = sqs.create_queue(QueueName="dead.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    redrive = {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": "3"}
    url = sqs.create_queue(
        QueueName="work.fifo",
        Attributes={
            "FifoQueue": "true",
            "ContentBasedDeduplication": "true",
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    for _ in range(2):  # the same body twice: content-based deduplication keeps one
        sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")

    everything = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert everything["ApproximateNumberOfMessages"] == "1"
    assert everything["FifoQueue"] == "true" and everything["ContentBasedDeduplication"] == "true"
    assert json.loads(everything["RedrivePolicy"]) == {**redrive, "maxReceiveCount": 3}
    assert "Policy" not in everything and "KmsMasterKeyId" not in everything

    from moto.sqs.models import Queue, sqs_backends

    queue = sqs_backends["123456789012"]["us-east-1"].queues["work.fifo"]
    names = Queue.BASE_ATTRIBUTES + Queue.FIFO_ATTRIBUTES
    assert list(queue.attributes) == names and len(queue.attributes) == len(names)
    assert queue.attributes.get("KmsMasterKeyId") is None
    with pytest.raises(KeyError):
        queue.attributes["NoSuchAttribute"]
    plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
    assert (
        "FifoQueue"
        not in sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["All"])["Attributes"]
    )


def test_a_receive_returns_the_attributes_asked_for_and_leaves_the_queued_message_whole(sqs):
    from moto.sqs.models import sqs_backends

    url = sqs.create_queue(QueueName="attributes")["QueueUrl"]
    attributes = {
        "Custom.a": {"DataType": "String", "StringValue": "1"},
        "other": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    sqs.send_message(QueueUrl=url, MessageBody="m", MessageAttributes=attributes)

    (got,) = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["Custom.*"], VisibilityTimeout=0
    )["Messages"]
    assert got["MessageAttributes"] == {"Custom.a": attributes["Custom.a"]}
    (queued,) = sqs_backends["123456789012"]["us-east-1"].queues["attributes"]._messages
    assert set(queued.message_attributes) == {"Custom.a", "other"}
    assert queued.receipt_handle == got["ReceiptHandle"]
    (again,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert again["MessageAttributes"] == attributes
    assert again["ReceiptHandle"] != got["ReceiptHandle"] and queued.approximate_receive_count == 2


def test_delete_takes_the_current_or_an_earlier_receipt_handle_once(sqs):
    url = sqs.create_queue(QueueName="deletes")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="first")
    sqs.send_message(QueueUrl=url, MessageBody="second")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    assert {m["Body"] for m in again} == {"first", "second"}

    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # an older handle
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # again: accepted
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNTS)["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    with pytest.raises(ClientError) as refused:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert refused.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"


def test_messages_past_the_retention_period_are_not_received(sqs):
    from moto.sqs.models import sqs_backends

    url = sqs.create_queue(QueueName="retention", Attributes={"MessageRetentionPeriod": "60"})[
        "QueueUrl"
    ]
    sqs.send_message(QueueUrl=url, MessageBody="old")
    (message,) = sqs_backends["123456789012"]["us-east-1"].queues["retention"]._messages
    message.sent_timestamp = int(time.time() * 1000) - 61_000
    assert "Messages" not in sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)
    message.sent_timestamp = int(time.time() * 1000)
    message.visible_at = 0  # the refused receive still marked it received
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "old"


def test_sets_are_sized_as_moto_sizes_their_members_and_the_item_limit_holds(dynamodb):
    from moto.dynamodb.models.dynamo_type import DynamoType

    sets = [
        {"SS": ["a", "tag", "ünïcode", "日本語", ""]},
        {"NS": ["1", "-2.50", "1e10", "123456789012345678901234567890"]},
        {"BS": [b"\x00\x01", b"", b"bytes" * 7]},
    ]
    for value in sets:
        kind, members = next(iter(value.items()))
        by_member = sum(DynamoType({kind[0]: member}).size() for member in members)
        assert DynamoType(value).size() == by_member
    assert DynamoType({"S": "plain"}).size() == 5  # other types are sized by moto

    # an item holding a 300 KB set still cannot take another 200 KB: the 400 KB limit counts
    # the set
    _put(dynamodb, "P", "profile")
    key = {"PK": {"S": "P"}, "SK": {"S": "profile"}}
    big = [f"{i:06d}" + "x" * 994 for i in range(300)]
    dynamodb.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="ADD tags :t",
        ExpressionAttributeValues={":t": {"SS": big}},
    )
    with pytest.raises(ClientError, match="Item size"):
        dynamodb.update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET padding = :p",
            ExpressionAttributeValues={":p": {"S": "z" * 200_000}},
        )
    assert "padding" not in _get(dynamodb, "P", "profile")


def test_receipt_handles_and_request_ids_keep_their_shape_and_differ(sqs):
    patch_moto_random_ids()
    url = sqs.create_queue(QueueName="handles")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handles = set()
    request_ids = set()
    for _ in range(3):
        response = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)
        (message,) = response["Messages"]
        handles.add(message["ReceiptHandle"])
        request_ids.add(response["ResponseMetadata"]["RequestId"])
    assert len(handles) == 3 and len(request_ids) == 3
    assert all(len(h) == 185 and h.isalpha() and h.islower() for h in handles)
    assert all(len(r) == 52 and r.isalnum() for r in request_ids)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
