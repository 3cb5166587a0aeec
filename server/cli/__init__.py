"""The `mms` command."""

from __future__ import annotations

import os
import sys

from server.cli.main import main as _main


def main(argv: list[str] | None = None) -> int:
    """`mms`, and quiet on a closed pipe: `mms audit | head` ends when head has read
    enough, with no traceback (the pipe's reader is gone, so nothing more is written)."""
    try:
        rc = _main(argv)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        # Python would flush stdout again at exit and complain; point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)


__all__ = ["main"]
