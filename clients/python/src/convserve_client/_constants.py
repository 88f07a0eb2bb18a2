"""Defaults of the client, in one place: where to connect, how long to wait, how to retry."""

from __future__ import annotations

import httpx

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_AFTER",
    "MAX_RETRY_DELAY",
    "RETRY_JITTER",
    "RETRY_STATUSES",
    "URL_ENV",
]

URL_ENV = "CONVSERVE_URL"
"""Environment variable holding the base URL when none is passed."""
API_KEY_ENV = "CONVSERVE_API_KEY"
"""Environment variable holding the API key when none is passed."""
DEFAULT_BASE_URL = "http://localhost:8000"

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
"""A large image through a large kernel bank can take seconds; connecting should not."""

DEFAULT_MAX_RETRIES = 2
"""Retries after the first attempt (so at most three requests per call)."""
INITIAL_RETRY_DELAY = 0.5
"""Seconds before the first retry; doubles with each further retry."""
MAX_RETRY_DELAY = 8.0
"""Longest backoff between two attempts when the server gives no Retry-After."""
RETRY_JITTER = 0.25
"""Backoff delays are shortened by a random fraction up to this, so clients spread out."""
MAX_RETRY_AFTER = 60.0
"""Longest wait a server's Retry-After may impose; a longer one is cut to this."""

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
"""Statuses that say "try again later": rate limited, overloaded, or a gateway in between."""
