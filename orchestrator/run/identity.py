"""A run's identity and claim: a run directory belongs to one computation (the config after overrides and
the teacher's bytes), recorded in its CONFIG_FILE when the run is claimed, under a file lock so that two
drivers (or `kdsweep train --trial` processes) sharing a directory cannot both claim it."""
from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock   # installed with Ray; imported here without Ray

from orchestrator.config import ConfigError, SweepConfig, from_dict, resolve_path, to_dict
from orchestrator.errors import UserError
from orchestrator.run.io import atomic_write_json
from orchestrator.run.layout import CLAIM_LOCK, CONFIG_FILE


def _normalized(theirs: dict, mine: dict) -> dict:
    """A claim written by an older kdsweep, read through today's schema: keys added since take their
    defaults (the computation they describe is unchanged); a claim without a teacher record cannot be
    checked for one, so it takes this run's."""
    teacher = theirs.pop("_teacher", mine.get("_teacher"))
    try:
        theirs = json.loads(json.dumps(to_dict(from_dict(SweepConfig, theirs)), default=str))
    except ConfigError:
        pass  # not readable today: compared as it is, and reported as different
    return {**theirs, "_teacher": teacher}


def _has_trials(run_dir: Path) -> bool:
    return any(run_dir.glob("*/result.json")) or any(run_dir.glob("experiment_state*.json"))


def claim_run_dir(run_dir: str, cfg: SweepConfig, teacher: dict | None):
    """A run directory belongs to one computation (the config after overrides and the teacher's bytes):
    resuming it with another would mix two sweeps. A claim with no trial yet (a sweep that failed before
    its first trial) is given up to a corrected config."""
    if "://" in run_dir:
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(run_dir) / CLAIM_LOCK)):   # check, then write, as one step
        _claim(run_dir, cfg, teacher)


def _claim(run_dir: str, cfg: SweepConfig, teacher: dict | None):
    path = Path(run_dir) / CONFIG_FILE
    mine = json.loads(json.dumps({**to_dict(cfg), "_teacher": teacher}, default=str))
    if path.is_file() and _has_trials(Path(run_dir)):
        theirs = _normalized(json.loads(path.read_text()), mine)
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if "_teacher" in diff:
                diff[diff.index("_teacher")] = (f"the teacher: {(theirs.get('_teacher') or {}).get('path')} -> "
                                                f"{(teacher or {}).get('path')}")
            raise UserError(f"{run_dir} holds a sweep that computed something else (differs in {', '.join(diff)}); "
                             f"give this sweep another name (--set name=...) or pass --force to start it over")
        return
    atomic_write_json(path, mine)


def run_dir_of(cfg: SweepConfig) -> str:
    s = cfg.sweep.storage
    return f"{s.rstrip('/')}/{cfg.name}" if "://" in s else str(Path(resolve_path(s)) / cfg.name)


