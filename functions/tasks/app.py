"""Tasks worker (SQS): deferred work that is not enrichment — flushing unpaired captured
prompts, exports, and re-embedding after an embeddings change."""

import json
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.services import tasks
from memlayer.worker import each, sqs_batch_handler


async def _run(record: SQSRecord) -> None:
    message: Any = json.loads(record.body)
    await tasks.dispatch(message)


async def process(records: list[SQSRecord]) -> dict[str, Exception]:
    return await each(records, _run)


handler = sqs_batch_handler(process)
