"""The base of memlayer's pydantic models: each builds its validator and serializer when it is
first used, not when its module is imported.

Every function imports the package's models (the API's, the records', the queue messages')
but uses only its own few. Deferred, a function builds the models of its routes at init
(FastAPI, when the app is created), the ones a request validates or serializes on the first
such request, and the rest never. Retrieval: 55 M instructions off its init, ≈ 35 M of them
back in its first search (bench/instructions.py; README, Benchmarks).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LazyModel(BaseModel):
    model_config = ConfigDict(defer_build=True)
