"""The base of memlayer's pydantic models: each builds its validator and serializer when it is
first used, not when its module is imported.

Every function imports the package's models (the API's, the records', the queue messages')
but validates only its own few: built at import, the others cost a cold start ≈ 0.17 s of
CPU (retrieval: init 800 → 640 ms CPU at this machine's speed, first search unchanged;
bench/coldstart.py). FastAPI builds the models of a function's routes when the app is
created, so requests see no difference.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LazyModel(BaseModel):
    model_config = ConfigDict(defer_build=True)
