"""The one error family of FaceAudit: every error a user can cause or fix is a `FaceAuditError`.

Each says, in one line, which file (and row) is wrong and how to fix it. The command-line entry
points print that line and exit with status 2 (`training._cli.command`); `--debug` shows the traceback.
"""

from __future__ import annotations

__all__ = ["FaceAuditError", "EXIT_USAGE"]

EXIT_USAGE = 2  # the exit status of a command refused for its input, as argparse uses for bad flags


class FaceAuditError(Exception):
    """An input FaceAudit cannot use: a file, a row, a setting. The message names it and the fix."""
