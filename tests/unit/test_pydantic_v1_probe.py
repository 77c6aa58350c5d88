"""memlayer.web answers FastAPI's "is this a pydantic.v1 model?" from sys.modules: a v1 model
is refused as FastAPI refuses it, and building an app no longer imports pydantic.v1 (the
HTTP functions' import test checks a fresh interpreter)."""

from __future__ import annotations

import warnings

import pytest
from fastapi import APIRouter
from fastapi.exceptions import PydanticV1NotSupportedError
from pydantic import BaseModel

import memlayer.web  # noqa: F401 - installs the probe


class Current(BaseModel):
    x: int


def test_a_pydantic_v1_model_is_still_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic.v1 warns on Python 3.14+
        from pydantic import v1

    class Old(v1.BaseModel):
        x: int

    router = APIRouter()
    with pytest.raises(PydanticV1NotSupportedError):

        @router.get("/old", response_model=Old)
        async def old() -> None: ...

    @router.get("/current", response_model=Current)
    async def current() -> Current:
        return Current(x=1)

    assert [route.path for route in router.routes] == ["/current"]
