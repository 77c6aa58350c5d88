"""A user's tag vocabulary (every tag their memories carry, kept on the profile item) in
DynamoDB (a mixin of DynamoStore), and its part of the Store interface."""

from __future__ import annotations

from typing import Any, Protocol

from memlayer.storage.dynamo_base import PROFILE_SK, DynamoBase, _s, user_pk


class TagsStore(Protocol):
    async def add_user_tags(self, user_id: str, tags: list[str]) -> None: ...

    async def get_user_tags(self, user_id: str) -> list[str]: ...


class DynamoTags(DynamoBase):
    async def add_user_tags(self, user_id: str, tags: list[str]) -> None:
        if not tags:
            return
        try:
            await self._run(
                self.client.update_item,
                TableName=self.table,
                Key={"PK": _s(user_pk(user_id)), "SK": _s(PROFILE_SK)},
                UpdateExpression="ADD tag_vocabulary :t",
                # An erased user's profile is gone; a late worker must not recreate it.
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues={":t": {"SS": sorted(set(tags))}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return

    async def get_user_tags(self, user_id: str) -> list[str]:
        resp: dict[str, Any] = await self._run(
            self.client.get_item,
            TableName=self.table,
            Key={"PK": _s(user_pk(user_id)), "SK": _s(PROFILE_SK)},
            ProjectionExpression="tag_vocabulary",
        )
        return sorted(resp.get("Item", {}).get("tag_vocabulary", {}).get("SS", []))
