"""`python3 bench/memory.py` is `mms bench memory` (server/tools/bench_memory.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from server.tools.bench_memory import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
