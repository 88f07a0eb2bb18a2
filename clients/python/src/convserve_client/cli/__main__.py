"""``python -m convserve_client.cli``: the ``convserve`` command line."""

import sys

from convserve_client.cli._main import main

sys.exit(main())
