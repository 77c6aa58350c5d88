"""The queue messages, typed: what services send (`memlayer.queues.send`) and what the workers
read back (`memlayer.worker`). Messages carry ids, never content.

- analyze and embed: `StageMessage` {memory_id, user_id, job_id};
- tasks: one of `CaptureFlush`, `ExportTask`, `ReembedTask`, told apart by `type` (`TaskMessage`);
- uploads: S3's own ObjectCreated notification (`services.uploads.parse_s3_event`).

A body that does not parse is poison: `PoisonMessage`, the same in every worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter

from memlayer.lazy_model import LazyModel
from memlayer.settings import get_settings

T = TypeVar("T")


class PoisonMessage(Exception):
    """A message that can never succeed (its body does not parse); the worker fails it like any
    other record, so after its retries it rests in the queue's DLQ for inspection."""


@dataclass(frozen=True)
class Delivery(Generic[T]):
    """A parsed message and how often SQS has delivered it (`memlayer.worker.delivery`)."""

    message: T
    receive_count: int

    @property
    def final(self) -> bool:
        """The last delivery before the DLQ: a step falls back or records why, rather than
        raising for a retry that will not come."""
        return self.receive_count >= get_settings().queue_max_receives


class StageMessage(LazyModel):
    """Analyze or embed one memory, for the job that asked."""

    model_config = ConfigDict(frozen=True)

    memory_id: str
    user_id: str
    job_id: str


class CaptureFlush(LazyModel):
    """A captured prompt whose response never came: after the pairing window it becomes a
    memory on its own."""

    type: Literal["capture.flush"] = "capture.flush"
    user_id: str
    provider: str
    conversation_id: str
    capture_id: str


class ExportTask(LazyModel):
    type: Literal["export"] = "export"
    user_id: str
    job_id: str


class ReembedTask(LazyModel):
    """Re-embed the user's memories whose vectors are from another embedding space."""

    type: Literal["reembed"] = "reembed"
    user_id: str


TaskMessage = Annotated[CaptureFlush | ExportTask | ReembedTask, Field(discriminator="type")]
QueueMessage = StageMessage | CaptureFlush | ExportTask | ReembedTask

_TASK = TypeAdapter[CaptureFlush | ExportTask | ReembedTask](TaskMessage)


def parse_stage(body: str) -> StageMessage:
    return StageMessage.model_validate_json(body)


def parse_task(body: str) -> CaptureFlush | ExportTask | ReembedTask:
    return _TASK.validate_json(body)
