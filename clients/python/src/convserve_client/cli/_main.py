"""``main``: parse, run the command with a client, and turn errors into exit statuses."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from convserve_client._client import Client
from convserve_client._constants import URL_ENV
from convserve_client._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from convserve_client.cli._args import (
    EXIT_API_ERROR,
    EXIT_CONNECTION,
    EXIT_OK,
    UsageError,
)
from convserve_client.cli._parser import build_parser
from convserve_client.cli._text import print_error, status_message

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Callable[[Client, argparse.Namespace], int] = args.run
    parser: argparse.ArgumentParser = args.parser
    try:
        with Client(args.url, api_key=args.api_key, timeout=args.timeout,
                    max_retries=args.max_retries) as cs:
            return run(cs, args)
    except (UsageError, ValueError, TypeError) as exc:
        # argparse's own format and exit status 2: "convserve convolve: error: ..."
        parser.error(str(exc))
    except APITimeoutError as exc:
        print_error(f"{exc.message} (--timeout sets the limit)")
        return EXIT_CONNECTION
    except APIConnectionError as exc:
        print_error(f"{exc.message}; is the server running? (--url or ${URL_ENV} sets where)")
        return EXIT_CONNECTION
    except APIStatusError as exc:
        print_error(status_message(exc))
        return EXIT_API_ERROR
    except APIError as exc:
        print_error(exc.message)
        return EXIT_API_ERROR
    except BrokenPipeError:
        # The reader of stdout went away (| head): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print_error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        return EXIT_API_ERROR
