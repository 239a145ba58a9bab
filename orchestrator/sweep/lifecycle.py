"""A run's lifecycle, written once for both backends (Ray Tune's driver, `kdsweep sweep`, and the in-process
runner, `kdsweep train`): check the budget, make the config's sources absolute, open the run, identify the
teacher, start over on --force, claim it (the same computation, or a clear refusal, before any expensive
work); then the backend trains; then the meta record (the finished marker, written last) and the export."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import SweepConfig
from orchestrator.release.export import export
from orchestrator.run.rundir import Run
from orchestrator.sweep.prepare import check_budget, teacher_identity, with_absolute_sources

log = logging.getLogger(__name__)


@dataclass
class Opened:
    """A claimed run, ready for its backend."""

    cfg: SweepConfig  # its sources made absolute
    run: Run
    teacher: dict | None  # the teacher's identity (path, sha256), part of the claim
    counts: dict[str, int]  # student -> parameters (torchinfo)
    finished: bool  # it had finished before: nothing to train

    def finish(self, meta: dict):
        """The meta record, written last: the run is finished."""
        self.run.finish({**meta, "student_params": self.counts})

    def export(self, export_to: str | None, force: bool = False, tta: str = "config"):
        if export_to is not None:
            cfg = self.cfg
            export(
                self.run.fetch(checkpoints=True),
                Path(export_to),
                data_dir=cfg.data.data_dir,
                budget=cfg.budget,
                force=force,
                tta=tta,
            )


def open_run(
    cfg: SweepConfig,
    teacher_path: str | None,
    force: bool,
    export_to: str | None = None,
    refuse: Callable[[Run], None] | None = None,
) -> Opened:
    """Budget, sources, the run, the teacher, --force, the claim. `refuse(run)`: a backend's own check of
    the run before anything is written (kdsweep train: storage on this machine's disk)."""
    counts = check_budget(cfg)
    cfg = with_absolute_sources(cfg)
    run = Run.of(cfg)
    if refuse is not None:
        refuse(run)
    teacher = teacher_identity(cfg, teacher_path)
    finished = run.finished and not force
    if finished:
        log.info(
            f"{cfg.name} already finished in {run.path}; not training it again"
            + (", exporting it" if export_to else "")
            + " (--force starts it over)"
        )
    elif force and run.exists(""):
        log.info(f"--force: deleting {run.path} and starting over")
        run.remove()
    run.claim(cfg, teacher)  # the same computation, or a clear refusal
    return Opened(cfg, run, teacher, counts, finished)
