"""FastAPI dependencies, as ``Annotated`` aliases used by the routers.

They are ``async def`` although they never wait: FastAPI runs a plain ``def`` dependency in its
thread pool, a thread hop per dependency per request for work that takes microseconds.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from convserve.api.runtime import Runtime
from convserve.errors import AuthenticationError
from convserve.settings import Settings

__all__ = ["RuntimeDep", "SettingsDep", "require_api_key"]


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """Accept ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` when keys are configured."""
    if not settings.api_keys:
        return
    supplied = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if supplied is None and auth[:7].lower() == "bearer ":
        supplied = auth[7:].strip()
    if supplied is None:
        raise AuthenticationError(
            "this server requires an API key: send 'Authorization: Bearer <key>' or "
            "'X-API-Key: <key>'"
        )
    if not any(hmac.compare_digest(supplied.encode(), key.encode()) for key in settings.api_keys):
        raise AuthenticationError("the API key is not valid for this server")
