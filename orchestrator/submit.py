"""`kdsweep sweep` as a script, for a cluster head: `ray submit cluster.yaml orchestrator/submit.py -- --config
configs/full.yaml --address auto` (ray submit runs a file, not a console script)."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the project's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["sweep", *sys.argv[1:]]))
