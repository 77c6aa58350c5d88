"""Extract worker (SQS): S3 `ObjectCreated` notifications for the uploads bucket; each uploaded
file becomes a `file` memory (or a failed upload with its reason)."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.services import uploads
from memlayer.services.enrichment import PoisonMessage
from memlayer.settings import get_settings
from memlayer.worker import each, receive_count, sqs_batch_handler


async def _extract(record: SQSRecord) -> None:
    try:
        created = uploads.parse_s3_event(record.body)  # S3's test event gives none
    except ValueError as exc:
        raise PoisonMessage(str(exc)) from None
    final = receive_count(record) >= get_settings().queue_max_receives
    for item in created:
        await uploads.handle_object_created(item.bucket, item.key, item.size, final=final)


async def process(records: list[SQSRecord]) -> dict[str, Exception]:
    return await each(records, _extract)


handler = sqs_batch_handler(process)
