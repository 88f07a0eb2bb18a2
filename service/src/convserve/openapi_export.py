"""Write the OpenAPI document of the default app: ``python -m convserve.openapi_export PATH``."""

from __future__ import annotations

import json
import sys

from convserve.main import create_app
from convserve.settings import Settings

__all__ = ["main", "openapi_document"]


def openapi_document() -> str:
    """The spec as stable, sorted, indented JSON text (what openapi/openapi.json holds)."""
    app = create_app(Settings(warmup=False, api_keys=[], cors_origins=["*"]))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = openapi_document()
    if not args or args[0] == "-":
        sys.stdout.write(text)
    else:
        with open(args[0], "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
