"""The final stage's length under a budget: the minutes the run leaves it, each finalist's seconds an epoch (the
search's measurement or the plan's probe), its CPUs and trials at a time, and the epochs that fit."""

from __future__ import annotations

import statistics

from orchestrator.config import SweepConfig
from orchestrator.sweep.rates import ALONE_OVERHEAD, SWEEP_OVERHEAD, student_epoch_seconds

# Seconds an export takes, and the final stage's own start and end beyond its epochs (Tune launching the
# trial, its last report and checkpoint), as measured on 2 cores (bench/results/sweep_cold, experiments/ten_minutes).
EXPORT_S = 20.0
FINAL_START_S = 8.0


def final_stage_minutes(cfg: SweepConfig, elapsed_s: float) -> float:
    """The final stage's wall-clock budget: `final.minutes`, and within a whole-run `minutes` what is left of
    it after `elapsed_s`, the stage's own start and the export (0: no budget)."""
    budgets = [cfg.final.minutes] if cfg.final.minutes else []
    if cfg.minutes:
        budgets.append(max(1e-3, cfg.minutes - (elapsed_s + FINAL_START_S + EXPORT_S) / 60))  # spent: 1 epoch
    return min(budgets) if budgets else 0.0


def finalist_epoch_s(students: list[str], search_s: list[float] | None, plan_s: dict[str, float]) -> list[float]:
    """Each finalist's seconds an epoch at the search's threads, to fit the final stage with: the plan's
    probe where no search ran, else the slower of the search's measurement and the plan's. The stage's
    speed-up is the plan's ratio of its two estimates, so a search that ran faster than the plan's overhead
    assumed, divided by it, made the stage longer than fitted (measured: experiments/ten_minutes)."""
    if search_s is None:
        return [plan_s[s] for s in students]
    return [max(m, plan_s.get(s, 0.0)) for m, s in zip(search_s, students)]


def fit_final_epochs(
    cap: int, minutes: float, seconds_per_epoch: list[float], seeds: int, slots: int, floor: int = 1
) -> int:
    """The final stage's epochs under a wall-clock budget: at most `cap`, at least `floor` (final.min_epochs:
    what the result needs, whatever the budget). Each finalist trains `seeds` trials at its measured seconds
    per epoch; `slots` trials run at a time, so an epoch of the whole stage takes the slowest trial's time,
    or the total work spread over the slots when trials queue."""
    per_epoch = max(max(seconds_per_epoch), sum(seconds_per_epoch) * seeds / max(1, slots))
    return max(floor, 1, min(cap, int(minutes * 60 // per_epoch)))


def final_cpus(cfg: SweepConfig) -> float:
    """Each final trial's CPUs: final.cpus_per_trial, else the search's sweep.cpus_per_trial."""
    return cfg.final.cpus_per_trial or cfg.sweep.cpus_per_trial


def final_slots(cfg: SweepConfig, cpus: float, search_slots: int) -> int:
    """Final trials at a time: the search's, or what the CPUs hold at final.cpus_per_trial."""
    if not cfg.final.cpus_per_trial:
        return search_slots
    return max(1, min(cfg.sweep.max_concurrent_trials, int(cpus // cfg.final.cpus_per_trial)))


def final_speedup(
    cfg: SweepConfig,
    n_train: int,
    n_val: int,
    epoch_s: dict[str, float],
    alone: bool = False,
    layout: str = "channels_last",
) -> float:
    """How much faster a final trial's epoch runs than a search trial's (`epoch_s`), timed here at both
    thread counts (1.0 where they are the same); `alone`: one final trial fills the machine, so it does not
    share it with another as search trials do."""
    if not cfg.final.epochs or int(final_cpus(cfg)) == int(cfg.sweep.cpus_per_trial):
        return 1.0
    overhead = ALONE_OVERHEAD if alone else SWEEP_OVERHEAD
    fast = student_epoch_seconds(cfg, n_train, n_val, int(final_cpus(cfg)), overhead, layout)
    return statistics.median(epoch_s[k] / fast[k] for k in epoch_s)


def final_epoch_s(cfg: SweepConfig, slowest: float, final_speedup: float, fslots: int) -> float:
    """An epoch of the whole final stage: the top finalists x seeds at the slowest student's epoch (divided
    by the final trials' measured speed-up), `fslots` at a time (fit_final_epochs' stage epoch)."""
    f = cfg.final
    return slowest / max(final_speedup, 1e-9) * max(1.0, f.top * f.seeds / max(1, fslots))
