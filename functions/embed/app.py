"""Embed worker (SQS): one batched embeddings call per SQS batch; the memory becomes ready."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.messages import Delivery, StageMessage, parse_stage
from memlayer.services import enrichment
from memlayer.worker import BatchCall, RecordHandler, delivery, sqs_batch_worker


def _per_batch(size: int) -> RecordHandler:
    """Each record submits its delivery to the batch's one `enrichment.embed` call and fails (or
    not) with its own outcome; an unreadable record drops out of the call."""
    batch = BatchCall(size, enrichment.embed)

    async def _embed(record: SQSRecord) -> None:
        async def read() -> Delivery[StageMessage]:
            return delivery(record, parse_stage)

        await batch.submit(read)

    return _embed


handler = sqs_batch_worker(_per_batch)
