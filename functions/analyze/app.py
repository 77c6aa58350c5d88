"""Analyze worker (SQS): fetch + extract shared URLs, scrub, LLM analysis, then hand to embed."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.services import enrichment
from memlayer.worker import each, receive_count, sqs_batch_handler


async def _analyze(record: SQSRecord) -> None:
    delivery = enrichment.Delivery(enrichment.parse_message(record.body), receive_count(record))
    try:
        await enrichment.analyze(delivery)
    except enrichment.SupersededError:
        return


async def process(records: list[SQSRecord]) -> dict[str, Exception]:
    return await each(records, _analyze)


handler = sqs_batch_handler(process)
