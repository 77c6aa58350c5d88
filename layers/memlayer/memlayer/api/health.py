"""Health (`GET /v1/health`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["healthy", "degraded"]
    services: dict[str, str]
