"""DynamoDB access for pipeline (a mixin of DynamoStore) and its part of the Store interface."""

from __future__ import annotations

from typing import Protocol

from memlayer.storage.dynamo_base import DynamoBase


class PipelineStore(Protocol):
    pass


class DynamoPipeline(DynamoBase):
    pass
