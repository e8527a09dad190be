"""Service discovery and ping: how the terraform CLI finds the API."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

router = APIRouter(tags=["discovery"])

API_VERSION = "2.5"


@router.get("/.well-known/terraform.json")
async def well_known() -> Response:
    # Terraform 1.0.3 looks up exactly "tfe.v2.1"; the media type must be exactly application/json.
    return JSONResponse(
        {"tfe.v2": "/api/v2/", "tfe.v2.1": "/api/v2/", "tfe.v2.2": "/api/v2/", "state.v2": "/api/v2/"},
        media_type="application/json",
    )


@router.get("/api/v2/ping")
async def ping() -> Response:
    return Response(status_code=204, headers={"TFP-API-Version": API_VERSION})
