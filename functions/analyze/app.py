"""Analyze worker (SQS): fetch + extract shared URLs, scrub, LLM analysis, then hand to embed."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.messages import StageMessage, parse_stage
from memlayer.services import enrichment
from memlayer.worker import BatchCall, RecordHandler, delivery, sqs_batch_worker


def _per_batch(size: int) -> RecordHandler:
    """Each record is analyzed on its own; the batch's analyzed memories go to the embed queue
    in one send, each record failing (or not) with its own message's outcome."""
    hand_off = BatchCall(size, enrichment.hand_to_embed)

    async def _analyze(record: SQSRecord) -> None:
        async def analyzed() -> StageMessage | None:
            try:
                return await enrichment.analyze(delivery(record, parse_stage))
            except enrichment.SupersededError:
                return None

        await hand_off.submit(analyzed)

    return _analyze


handler = sqs_batch_worker(_per_batch)
