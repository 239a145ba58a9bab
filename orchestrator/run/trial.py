"""A trial's directory, written once and read once: what a trial leaves, by either backend, and how kdsweep
results / export / report read it back.

    <trial>/params.json      its settings: Tune's sampled config (an explicit trial under `_variant`)
    <trial>/result.json      one JSON line per reported epoch, as `trainables.config.to_report` makes them
    <trial>/checkpoint_*/checkpoint.pt
    <trial>/error.txt, fatal_error.txt   why it failed (Tune's record; faulthandler's, where it died of a signal)

A Ray Tune trial's lines are written by Tune's JSON logger from what the trainable reports (with Tune's own
keys beside); a `kdsweep train` trial's by `append_row`, in the same form.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.run.io import atomic_write_json, atomic_write_text, read_json
from orchestrator.run.layout import PARAMS_FILE, RESULT_FILE
from trainables.config import from_report, to_report


def rows(trial_dir: Path) -> list[dict]:
    """The trial's reported epochs, each with its metrics whole (a line being written right now ends it)."""
    return result_lines(Path(trial_dir) / RESULT_FILE)


def result_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            out.append(from_report(json.loads(line)))
        except json.JSONDecodeError:  # a line being written right now
            break
    return out


def params(trial_dir: Path) -> dict:
    p = Path(trial_dir) / PARAMS_FILE
    return read_json(p)


def write_params(trial_dir: Path, variant: dict):
    atomic_write_json(Path(trial_dir) / PARAMS_FILE, {"_variant": variant})


def append_row(trial_dir: Path, metrics: dict, **extra):
    """One reported epoch (or a trial's end: diverged), in the form Tune's trials leave."""
    with open(Path(trial_dir) / RESULT_FILE, "a") as f:
        f.write(json.dumps({**to_report(metrics), **extra}) + "\n")


def keep_rows(trial_dir: Path, keep) -> list[dict]:
    """Rewrite the trial's lines to those `keep(row)` accepts (a resume drops what its checkpoint lacks)."""
    kept = [r for r in rows(trial_dir) if keep(r)]
    atomic_write_text(Path(trial_dir) / RESULT_FILE, "".join(json.dumps(to_report(r)) + "\n" for r in kept))
    return kept
