"""Deferred models (`memlayer.lazy_model`) under FastAPI: a body model is built on its first
request, and pydantic's warning about the `alias` FastAPI wraps it with stays out of the log."""

from __future__ import annotations

import warnings
from typing import Annotated

from pydantic import Field, TypeAdapter
from pydantic.warnings import UnsupportedFieldAttributeWarning

from memlayer.lazy_model import LazyModel, silence_fastapi_alias_warning


def _first_use_warnings(silenced: bool) -> list[type[Warning]]:
    """What a deferred body model's first validation warns, as FastAPI sets it up."""

    class Note(LazyModel):  # a new class each time: its deferred build has not run yet
        text: str

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as FastAPI builds its adapter for a body parameter
        adapter = TypeAdapter(Annotated[Note, Field(alias="body")])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if silenced:
            silence_fastapi_alias_warning()
        assert adapter.validate_python({"text": "lease"}).text == "lease"  # the deferred build
        warnings.warn("a warning of another kind still shows", UserWarning, stacklevel=1)
    return [w.category for w in seen]


def test_a_deferred_body_models_first_use_does_not_log_the_alias_warning():
    # without the filter pydantic warns on that first use (what the filter is for) ...
    assert UnsupportedFieldAttributeWarning in _first_use_warnings(silenced=False)
    # ... with it, only that warning is gone
    categories = _first_use_warnings(silenced=True)
    assert UnsupportedFieldAttributeWarning not in categories
    assert UserWarning in categories
