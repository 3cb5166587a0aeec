"""`python -m server.cli ARGS`: the `mms` command without its console script (child
processes started by the tests and the launcher). Running `-m server.cli.main` instead
imports main twice (once via the package), which runpy warns about."""

import sys

from server.cli import main

sys.exit(main())
