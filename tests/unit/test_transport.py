"""Calls to the local cloud's own moto endpoint are served in process, by moto's app."""

from __future__ import annotations

import socket

import boto3
import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from infra.localcloud import transport


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_requests_to_an_installed_endpoint_need_no_server():
    endpoint = f"http://127.0.0.1:{_unused_port()}"  # nothing listens here
    transport.install(endpoint, DomainDispatcherApplication(create_backend_app))
    try:
        kwargs = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        s3 = boto3.session.Session().client("s3", **kwargs)
        s3.create_bucket(Bucket="in-process")
        s3.put_object(Bucket="in-process", Key="a b/c.bin", Body=b"\x00\xff" * 1000)
        body = s3.get_object(Bucket="in-process", Key="a b/c.bin")["Body"].read()
        assert body == b"\x00\xff" * 1000
        sqs = boto3.session.Session().client("sqs", **kwargs)
        url = sqs.create_queue(QueueName="in-process")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hello"
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):  # moto's error, parsed
            sqs.get_queue_url(QueueName="no-such-queue")
        # JSON-protocol calls reach moto's handler without Flask; answers and errors are moto's.
        dynamodb = boto3.session.Session().client("dynamodb", **kwargs)
        dynamodb.create_table(
            TableName="in-process",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        item = {"PK": {"S": "a"}, "n": {"N": "1"}}
        dynamodb.put_item(TableName="in-process", Item=item)
        got = dynamodb.get_item(TableName="in-process", Key={"PK": {"S": "a"}})
        assert got["Item"] == item
        assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-crc32"]
        with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
            dynamodb.put_item(
                TableName="in-process", Item=item, ConditionExpression="attribute_not_exists(PK)"
            )
        with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.get_item(TableName="no-such-table", Key={"PK": {"S": "a"}})
    finally:
        transport.uninstall(endpoint)


def test_in_process_json_calls_carry_the_access_key_unsigned_and_the_rest_are_signed():
    endpoint = f"http://127.0.0.1:{_unused_port()}"
    transport.install(endpoint, DomainDispatcherApplication(create_backend_app))
    sent: dict[str, str] = {}

    def seen(request, event_name, **_):
        sent[event_name.split(".")[1]] = request.headers["Authorization"].decode()

    try:
        kwargs = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "AKIALOCALCLOUD000001",
            "aws_secret_access_key": "testing",
        }
        sqs = boto3.session.Session().client("sqs", **kwargs)
        s3 = boto3.session.Session().client("s3", **kwargs)
        for client in (sqs, s3):
            client.meta.events.register_first("before-send", seen)
        url = sqs.create_queue(QueueName="unsigned")["QueueUrl"]
        assert sqs.get_queue_url(QueueName="unsigned")["QueueUrl"] == url  # moto answers
        s3.create_bucket(Bucket="signed")
        # the access key (moto's account lookup) is there; the signature is not computed
        assert sent["sqs"].startswith("AWS4-HMAC-SHA256 Credential=AKIALOCALCLOUD000001/")
        assert sent["sqs"].endswith("Signature=local")
        assert "Signature=local" not in sent["s3"]
        assert len(sent["s3"].rpartition("Signature=")[2]) == 64  # a real SigV4 signature
        presigned = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "signed", "Key": "k"}, ExpiresIn=60
        )
        assert "Signature=" in presigned and "Signature=local" not in presigned
    finally:
        transport.uninstall(endpoint)
