"""Analyze worker (SQS): fetch + extract shared URLs, scrub, LLM analysis, then hand to embed."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.services import pipeline
from memlayer.worker import each, receive_count, sqs_batch_handler


async def _analyze(record: SQSRecord) -> None:
    delivery = pipeline.Delivery(pipeline.parse_message(record.body), receive_count(record))
    try:
        await pipeline.analyze(delivery)
    except pipeline.SupersededError:
        return


async def process(records: list[SQSRecord]) -> dict[str, Exception]:
    return await each(records, _analyze)


handler = sqs_batch_handler(process)
