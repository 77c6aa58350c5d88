"""Health (`GET /v1/health`)."""

from __future__ import annotations

from typing import Literal

from memlayer.lazy_model import LazyModel


class Health(LazyModel):
    status: Literal["healthy", "degraded"]
    services: dict[str, str]
