"""The students' training speed, measured here before a run spends anything: images/s of each student in each
memory layout at the trials' threads (a few steps of `train_speed`), and the seconds an epoch takes in a trial."""

from __future__ import annotations

import statistics

import torch

from orchestrator.config import SweepConfig
from trainables.engine import resolve_precision
from trainables.speed import train_speed

# A trial's epoch in a sweep runs below `train_speed`'s bare step (data views, the teacher's logits, the loss,
# validation, a checkpoint, another trial on the other core): the estimate divides the bare rate by this ratio
# (measured: bench/results/sweep_cold). A trial alone on the machine loses only the data, loss, validation and
# checkpoint (measured: experiments/fast_recipe).
SWEEP_OVERHEAD = 1.35
ALONE_OVERHEAD = 1.05


def student_rates(cfg: SweepConfig, threads: int, layouts: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Training images/s of each student the config trains from scratch, in each of `layouts`, at `threads`:
    the median of three short timings (one alone is too noisy to rank layouts or thread counts by), the
    layouts taken in turn so that a machine's drift falls on both."""
    precision = resolve_precision(cfg.train.precision, "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        out: dict[str, dict[str, float]] = {lay: {} for lay in layouts}
        for name in cfg.students():
            runs: dict[str, list[float]] = {lay: [] for lay in layouts}
            for _ in range(3):
                for lay in layouts:
                    runs[lay].append(
                        train_speed(
                            name,
                            batch_size=cfg.train.batch_size,
                            steps=6,
                            warmup=2,
                            precision=precision,
                            layout=lay,
                            **cfg.train.student_kwargs,
                        )
                    )
            for lay in layouts:
                out[lay][name] = statistics.median(runs[lay])
        return out
    finally:
        torch.set_num_threads(before)


def pick_layout(rates: dict[str, dict[str, float]]) -> str:
    """The layout whose students' steps take the least time in all (rates: student_rates)."""
    return min(rates, key=lambda lay: sum(1 / r for r in rates[lay].values()))


def student_epoch_seconds(
    cfg: SweepConfig,
    n_train: int,
    n_val: int,
    threads: int,
    overhead: float = SWEEP_OVERHEAD,
    layout: str = "channels_last",
    rates: dict[str, float] | None = None,
) -> dict[str, float]:
    """Seconds per epoch of each student the config trains from scratch, as one trial runs it here in
    `layout` (`overhead`: SWEEP_OVERHEAD beside other trials, ALONE_OVERHEAD alone on the machine); `rates`:
    images/s already timed (student_rates), else timed now."""
    rates = rates if rates is not None else student_rates(cfg, threads, (layout,))[layout]
    return {name: overhead * (n_train + n_val / 3) / rate for name, rate in rates.items()}  # val: ~1/3 a step
