"""The base of memlayer's pydantic models: each builds its validator and serializer when it is
first used, not when its module is imported.

Every function imports the package's models (the API's, the records', the queue messages')
but uses only its own few. Deferred, a function builds the models of its routes at init
(FastAPI, when the app is created), the ones a request validates or serializes on the first
such request, and the rest never. Retrieval: 55 M instructions off its init, ≈ 35 M of them
back in its first search (bench/instructions.py; README, Benchmarks).
"""

from __future__ import annotations

import warnings

from pydantic import BaseModel, ConfigDict
from pydantic.warnings import UnsupportedFieldAttributeWarning


def silence_fastapi_alias_warning() -> None:
    """FastAPI wraps each body and query model as `Annotated[Model, Field(alias=<parameter>)]`
    and silences pydantic's "alias has no effect here" while it builds that adapter; a
    deferred model is built later, on its first request, where the same warning would reach
    every container's log. Only that warning, for those wrappers, is ignored. Installed when
    this module is imported (a `warnings.catch_warnings` around the import discards it)."""
    warnings.filterwarnings(
        "ignore",
        message=r"The 'alias' attribute with value '\w+' was provided to the `Field\(\)` function",
        category=UnsupportedFieldAttributeWarning,
    )


silence_fastapi_alias_warning()


class LazyModel(BaseModel):
    model_config = ConfigDict(defer_build=True)
