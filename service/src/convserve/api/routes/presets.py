"""GET /v1/presets and GET /v1/presets/{name}: named kernels and what they become."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from convserve.api.deps import RuntimeDep, require_api_key
from convserve.api.problems import PROBLEM_MEDIA_TYPE
from convserve.api.schemas import Problem
from convserve.conv.presets import MAX_PRESET_CHANNELS, PRESETS, resolve_preset

router = APIRouter(prefix="/v1", tags=["presets"], dependencies=[Depends(require_api_key)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "Unknown preset"},
    422: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}},
          "description": "Bad channels or parameter"},
}


@router.get("/presets", summary="Every named kernel")
async def list_presets() -> dict[str, list[dict[str, Any]]]:
    """Name, description, channel rule, parameters (defaults and ranges), source and whether
    the preset keeps values in [0, 1] (range-preserving)."""
    return {"presets": [preset.to_info() for preset in PRESETS.values()]}


@router.get("/presets/{name}", summary="A preset resolved for C input channels",
            responses=_ERRORS)
def get_preset(
    name: Annotated[str, Path(description="A preset name from GET /v1/presets",
                              json_schema_extra={"enum": list(PRESETS)})],
    request: Request,
    runtime: RuntimeDep,
    channels: Annotated[int, Query(ge=1, le=MAX_PRESET_CHANNELS,
                                   description="Input channels C")] = 3,
) -> dict[str, Any]:
    """The exact ``weight`` (c_out, C/groups, k_h, k_w), ``bias`` and ``groups`` the preset
    becomes for ``channels`` inputs. Any other query parameter is a preset parameter
    (``?size=5&sigma=1.5``). A plain ``def``: resolving a bank for thousands of channels is
    CPU work, kept off the event loop."""
    # Query values are text; the preset's parameters parse and check them (PresetParam).
    params = {k: v for k, v in request.query_params.items() if k != "channels"}
    resolved = resolve_preset(name, channels, params)
    runtime.limits.check_array_answer(
        resolved.weight.size, what=f"preset {resolved.name!r} for {channels} channels",
        advice="ask for fewer channels", field="channels")
    info = resolved.to_dict()
    info["preset"] = PRESETS[resolved.name].to_info()
    return info
