"""Tasks worker (SQS): deferred work that is not enrichment — flushing unpaired captured
prompts, exports, and re-embedding after an embeddings change."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.messages import parse_task
from memlayer.services import tasks
from memlayer.worker import delivery, sqs_worker


async def _run(record: SQSRecord) -> None:
    await tasks.dispatch(delivery(record, parse_task).message)


handler = sqs_worker(_run)
