"""`python -m ladder_client`: the `ladder` command."""

import sys

from ladder_client.cli import main

sys.exit(main())
