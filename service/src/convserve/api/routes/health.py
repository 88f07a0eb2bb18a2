"""Liveness, readiness and Prometheus metrics; open even when API keys are configured."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from convserve.api.deps import RuntimeDep
from convserve.api.problems import problem_response
from convserve.api.schemas import Problem
from convserve.errors import PROBLEM_BASE

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: engines loaded and a warm-up convolution passed",
    responses={503: {"model": Problem, "description": "Not ready yet, or warm-up failed"}},
)
async def readyz(runtime: RuntimeDep) -> Any:
    if runtime.ready.is_set():
        return {"status": "ready", "engine": runtime.settings.engine,
                "device": runtime.settings.device}
    detail = (
        f"warm-up failed: {runtime.warmup_error}"
        if runtime.warmup_error
        else "the engines are still warming up"
    )
    return problem_response(
        {"type": PROBLEM_BASE + "not-ready", "title": "Not ready", "status": 503,
         "detail": detail},
        headers={"Retry-After": "1"},
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
