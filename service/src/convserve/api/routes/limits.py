"""GET /v1/limits: the effective limits, as every check reads them."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.schemas import LimitsResponse

router = APIRouter(prefix="/v1", tags=["engines"], dependencies=[Depends(require_api_key)])


@router.get("/limits", summary="The limits every request is checked against")
async def limits(runtime: RuntimeDep) -> LimitsResponse:
    """Each limit's effective value on this server and the environment variable that sets it.

    The demo page and the clients read their bounds here, so they never disagree with the
    server's checks (``convserve.limits.Limits``).
    """
    return LimitsResponse(**runtime.limits.published())
