"""DynamoDB access for accounts (a mixin of DynamoStore) and its part of the Store interface."""

from __future__ import annotations

from typing import Protocol

from memlayer.storage.dynamo_base import DynamoBase


class AccountsStore(Protocol):
    pass


class DynamoAccounts(DynamoBase):
    pass
