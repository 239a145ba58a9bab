"""kdsweep speaks through the standard `logging` module: every module logs to its own logger under
`orchestrator` (its plan, stages, progress and results at INFO). `setup()` prints them on stdout, one line
each, as the command line and the Ray workers that report progress want them; a program that imports
kdsweep configures logging as it likes instead."""

from __future__ import annotations

import logging
import sys

# the command line this process runs, where it is kdsweep's CLI (set by `cli.main`); an export records it,
# so that a release names the one command it came from
COMMAND: str | None = None


class _Stdout(logging.StreamHandler):
    """A handler that writes to whatever `sys.stdout` is when a message comes (a redirected or captured
    stream), not to the one it met first, which may be closed by then."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _):
        pass


LOGGERS = ("orchestrator", "trainables")  # the driver's, and the training loops' (a teacher's epochs)


def setup(level: int = logging.INFO) -> logging.Logger:
    """kdsweep's messages on stdout (idempotent); returns the orchestrator's logger."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(getattr(h, "kdsweep", False) for h in logger.handlers):
            handler = _Stdout()
            handler.setFormatter(logging.Formatter("%(message)s"))
            handler.kdsweep = True
            logger.addHandler(handler)
        logger.setLevel(level)
    return logging.getLogger("orchestrator")
