"""Embed worker (SQS): one batched embeddings call per SQS batch; the memory becomes ready."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.services import pipeline
from memlayer.worker import receive_count, sqs_batch_handler


async def process(records: list[SQSRecord]) -> dict[str, Exception]:
    failures: dict[str, Exception] = {}
    readable: list[tuple[SQSRecord, pipeline.Delivery]] = []
    for record in records:
        try:
            message = pipeline.parse_message(record.body)
        except pipeline.PoisonMessage as exc:
            failures[record.message_id] = exc
            continue
        readable.append((record, pipeline.Delivery(message, receive_count(record))))
    failed = await pipeline.embed([delivery for _, delivery in readable])
    for position, exc in failed.items():
        failures[readable[position][0].message_id] = exc
    return failures


handler = sqs_batch_handler(process)
