"""``python -m convserve_client``: the ``convserve`` command line."""

import sys

from convserve_client.cli import main

sys.exit(main())
