"""Health (no auth) and the OpenAPI document."""

from fastapi import APIRouter, Response

from memlayer.api.health import Health
from memlayer.services import health
from memlayer.web import create_app, lambda_handler

router = APIRouter(tags=["health"])


@router.get("/v1/health", response_model=Health)
async def get_health() -> Health:
    return await health.check()


@router.get("/v1/openapi.json")
async def get_openapi() -> Response:
    return Response(health.openapi_document(), media_type="application/json")


app = create_app(router, title="memlayer health")
handler = lambda_handler(app)
