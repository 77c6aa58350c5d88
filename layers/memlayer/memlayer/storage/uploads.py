"""DynamoDB access for uploads (a mixin of DynamoStore) and its part of the Store interface."""

from __future__ import annotations

from typing import Protocol

from memlayer.storage.dynamo_base import DynamoBase


class UploadsStore(Protocol):
    pass


class DynamoUploads(DynamoBase):
    pass
