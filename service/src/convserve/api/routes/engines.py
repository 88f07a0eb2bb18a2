"""GET /v1/engines: what can run here."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.schemas import DeviceInfo, EngineInfo, EnginesResponse

router = APIRouter(prefix="/v1", tags=["engines"], dependencies=[Depends(require_api_key)])


@router.get("/engines", summary="Engines and devices available here")
async def engines(runtime: RuntimeDep) -> EnginesResponse:
    """Each engine with its library version and every device, available or not (with why)."""
    return EnginesResponse(
        default_engine=runtime.settings.engine,
        default_device=runtime.settings.device,
        engines=[
            EngineInfo(
                name=engine.name,
                version=engine.version(),
                devices=[DeviceInfo(**asdict(status)) for status in engine.devices()],
            )
            for engine in runtime.engines.values()
        ],
    )
