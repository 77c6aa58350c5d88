"""Extract worker (SQS): S3 `ObjectCreated` notifications for the uploads bucket; each uploaded
file becomes a `file` memory (or a failed upload with its reason)."""

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer.services import uploads
from memlayer.worker import delivery, sqs_worker


async def _extract(record: SQSRecord) -> None:
    notification = delivery(record, uploads.parse_s3_event)  # S3's test event lists none
    for item in notification.message:
        await uploads.handle_object_created(
            item.bucket, item.key, item.size, final=notification.final
        )


handler = sqs_worker(_extract)
