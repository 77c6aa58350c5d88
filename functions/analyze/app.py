"""Analyze worker (SQS): fetch + extract shared URLs, scrub, LLM analysis, then hand to embed."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.messages import parse_stage
from memlayer.services import enrichment
from memlayer.worker import delivery, sqs_worker


async def _analyze(record: SQSRecord) -> None:
    try:
        await enrichment.analyze(delivery(record, parse_stage))
    except enrichment.SupersededError:
        return


handler = sqs_worker(_analyze)
