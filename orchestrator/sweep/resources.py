"""What the Ray cluster holds for a sweep's trials: the GPU share, the trials at a time in each stage, and a
clear refusal where a trial could never start."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

from orchestrator.config import SweepConfig
from orchestrator.errors import UserError
from orchestrator.sweep.final_budget import final_cpus, final_slots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slots:
    """What the cluster holds for the trials: search trials at a time, each final trial's CPUs, final trials
    at a time."""

    search: int
    final_cpus: float
    final: int


def gpu_share(have: dict, cpus_per_trial: float) -> float:
    """`sweep.gpus_per_trial: auto` on a cluster holding `have` (Ray's resources): 0 without GPUs, else the
    GPUs split evenly over the trials its CPUs can run at once (a student leaves most of a GPU idle, so
    several share one), at most one GPU a trial; rounded down to Ray's 1e-4 resolution."""
    gpus, slots = have.get("GPU", 0), max(1, int(have.get("CPU", 0) // cpus_per_trial))
    return math.floor(min(1.0, gpus / slots) * 1e4) / 1e4 if gpus else 0.0


def with_gpus(cfg: SweepConfig, quiet: bool = False) -> SweepConfig:
    """`cfg` with its GPU share resolved for the connected cluster, and (unless `quiet`) where the trials and
    the teacher run said in the log."""
    import ray

    s = cfg.sweep
    if s.gpus_per_trial != "auto":
        return cfg
    have = ray.cluster_resources()
    share = gpu_share(have, s.cpus_per_trial)
    if share and not quiet:
        log.info(
            f"GPUs: {have['GPU']:g} on the cluster, each trial gets {share:g} of one "
            f"({int(1 / share)} trials to a GPU; sweep.gpus_per_trial: auto)"
            + (", the teacher's cache built on this machine's GPU" if driver_gpu() else "")
        )
    return dataclasses.replace(cfg, sweep=dataclasses.replace(s, gpus_per_trial=share))


def driver_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def slots_for(cfg: SweepConfig) -> Slots:
    import ray

    s, have = cfg.sweep, ray.cluster_resources()
    for res, need in (("CPU", s.cpus_per_trial), ("GPU", s.gpus_per_trial)):
        if need > have.get(res, 0):
            raise UserError(
                f"sweep.{res.lower()}s_per_trial is {need:g} but the Ray cluster has "
                f"{have.get(res, 0):g} {res}s: no trial could ever start; lower it or add nodes"
            )
    search = min(
        [s.max_concurrent_trials, int(have.get("CPU", 1) // s.cpus_per_trial)]
        + ([int(have.get("GPU", 0) // s.gpus_per_trial)] if s.gpus_per_trial else [])
    )
    fcpus = final_cpus(cfg)
    if cfg.final.epochs and fcpus > have.get("CPU", 0):
        raise UserError(
            f"final.cpus_per_trial is {fcpus:g} but the Ray cluster has {have.get('CPU', 0):g} "
            "CPUs: no final trial could ever start; lower it or add nodes"
        )
    return Slots(search, fcpus, final_slots(cfg, have.get("CPU", 1), search))
