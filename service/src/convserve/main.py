"""The ASGI app: ``create_app(settings)`` builds it; ``convserve.main:app`` serves the env's.

``app`` is built on first access from ``Settings()`` (the ``CONVSERVE_*`` environment), not at
import time, so importing this module has no side effects and tests build their own apps.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from convserve import __version__, allocator
from convserve.api.metrics import Metrics
from convserve.api.middleware import (
    JsonLogFormatter,
    RequestContextMiddleware,
    keep_uploads_in_memory,
)
from convserve.api.problems import install_problem_handlers
from convserve.api.routes import (
    convolve,
    engines,
    explain,
    health,
    layers,
    limits,
    models,
    presets,
)
from convserve.api.runtime import Runtime
from convserve.api.schemas import BODY_MODELS
from convserve.api.schemas.models import MODEL_BODY_MODELS
from convserve.conv import buffers
from convserve.priority import priority_initializer
from convserve.settings import Settings

__all__ = ["create_app"]  # and `app`, built on first access (see __getattr__)

STATIC_DIR = resources.files("convserve") / "static"

DESCRIPTION = """\
Apply convolution layers to images, exactly as PyTorch's `torch.nn.functional.conv2d`
(cross-correlation, no kernel flip), on a NumPy engine or an ONNX Runtime Conv graph.

Errors are RFC 9457 `application/problem+json` with `type`, `title`, `status`, `detail` and,
for field problems, `errors: [{"field", "message"}]`.
"""


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("convserve")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_convserve", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter())
        handler._convserve = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    # python-multipart logs a WARNING for every malformed body a client sends, which reached
    # stderr as a bare line outside the JSON logs; the client gets a 400 problem and the
    # access log records it, so only its errors are worth a line.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app for ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    if settings.malloc_tuning:
        allocator.tune()
    # The admission budget counts every byte a request holds; outputs the engines' pool kept
    # between requests would sit outside it (and large requests are convolved in bands).
    buffers.OUTPUTS.capacity = 0
    runtime = Runtime(settings=settings, metrics=Metrics())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.open()
        if not settings.warmup:
            runtime.ready.set()
        if not settings.sample_model:
            runtime.sample_done.set()
        started = asyncio.create_task(_start_up(runtime))
        try:
            yield
        finally:
            await started
            runtime.close()

    app = FastAPI(
        title="convserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        license_info={"name": "MIT"},
    )
    app.state.runtime = runtime
    app.openapi = lambda: _openapi_with_body_models(app)  # type: ignore[method-assign]
    install_problem_handlers(app)
    for module in (convolve, explain, layers, presets, engines, limits, health, models):
        app.include_router(module.router)

    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    def demo_page() -> FileResponse:
        return FileResponse(str(index), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    app.add_middleware(RequestContextMiddleware, metrics=runtime.metrics,
                       limits=runtime.limits, budget=runtime.budget,
                       body_limits={"/v1/models": (runtime.limits.max_model_bytes,
                                                   runtime.limits.model_too_large_detail())})
    # CORS outermost (added last): the problems the request middleware answers by itself
    # (413 over the upload limit, 408, 503 when the budget is full) carry CORS headers too, so
    # a browser reads them instead of a network error.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "Server-Timing", "X-Convserve-Shape",
                        "X-Convserve-Padding", "X-Convserve-Engine", "Content-Disposition",
                        "Retry-After"],
        max_age=600,
    )
    # Model uploads too: their bodies are admitted against the budget like any other.
    keep_uploads_in_memory(max(settings.max_upload_bytes, settings.max_model_bytes))
    return app


async def _start_up(runtime: Runtime) -> None:
    """The start-up work, in a thread so that the server answers /healthz at once: the warm-up
    (/readyz turns 200 when the engines have run one convolution), then the sample network
    into the model store (about a second to read or build and validate it). The sample comes
    second so that it never delays readiness, and /readyz does not wait for it: POST
    /v1/models/sample stores it on demand all the same.

    The thread runs at the compute threads' priority (``CONVSERVE_COMPUTE_NICE``), not the
    event loop's: it does compute work, and the ONNX Runtime sessions the warm-up makes keep
    their intra-op threads, which inherit its nice value."""
    loop = asyncio.get_running_loop()
    settings = runtime.settings
    starter = ThreadPoolExecutor(1, thread_name_prefix="convserve-start-up",
                                 initializer=priority_initializer(settings.compute_nice))
    try:
        if settings.warmup:
            await loop.run_in_executor(starter, runtime.warm_up)
        if settings.sample_model:
            await loop.run_in_executor(starter, runtime.store_sample)
    finally:
        starter.shutdown(wait=False)


def _openapi_with_body_models(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the JSON body models that routes parse by hand."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (*BODY_MODELS, *MODEL_BODY_MODELS):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[model.__name__] = js
        app.openapi_schema = schema
    return app.openapi_schema


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
