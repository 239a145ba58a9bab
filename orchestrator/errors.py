"""What a user can fix: `kdsweep` prints a UserError's message (which says what to do) on one line and exits 2.
Any other exception is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input (a config, a path, an argument, a file): the message names it and says what to do."""
