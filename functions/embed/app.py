"""Embed worker (SQS): one batched embeddings call per SQS batch; the memory becomes ready."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.services import enrichment
from memlayer.worker import receive_count, sqs_batch_handler


async def process(records: list[SQSRecord]) -> dict[str, Exception]:
    failures: dict[str, Exception] = {}
    readable: list[tuple[SQSRecord, enrichment.Delivery]] = []
    for record in records:
        try:
            message = enrichment.parse_message(record.body)
        except enrichment.PoisonMessage as exc:
            failures[record.message_id] = exc
            continue
        readable.append((record, enrichment.Delivery(message, receive_count(record))))
    failed = await enrichment.embed([delivery for _, delivery in readable])
    for position, exc in failed.items():
        failures[readable[position][0].message_id] = exc
    return failures


handler = sqs_batch_handler(process)
