"""Deferred tasks (`memlayer.messages.TaskMessage`), dispatched by their type. A malformed task
is poison before it gets here (`memlayer.worker.delivery`), so after its retries it rests in the
tasks DLQ for inspection instead of vanishing."""

from __future__ import annotations

from memlayer.messages import CaptureFlush, ExportTask, ReembedTask
from memlayer.services import captures, export, retrieval


async def dispatch(task: CaptureFlush | ExportTask | ReembedTask) -> None:
    if isinstance(task, CaptureFlush):
        await captures.flush(task.user_id, task.provider, task.conversation_id, task.capture_id)
    elif isinstance(task, ExportTask):
        await export.run_export(task.user_id, task.job_id)
    else:
        await retrieval.reembed(task.user_id)
