"""What every FaceAudit command does with an error it can explain: one line on stderr, exit status 2.

    python -m training.evaluate --manifest broken.csv --out x          # error: broken.csv line 3: ...
    python -m training.evaluate --manifest broken.csv --out x --debug  # the same, with its traceback

Errors that are not a `FaceAuditError` are bugs and keep their traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from core.errors import EXIT_USAGE, FaceAuditError

__all__ = ["command"]


def command(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """Wrap a command's `main(argv)`: a `FaceAuditError` becomes `error: <message>` and exit 2; `--debug` re-raises."""
    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        if debug:
            argv.remove("--debug")
        try:
            return main(argv)
        except FaceAuditError as error:
            if debug:
                raise
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    return run
