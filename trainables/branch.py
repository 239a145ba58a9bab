"""Cool-down branches of a warmup-stable-decay run (`train.schedule: wsd`, `train.branches`): one long run
held at its peak learning rate reads the end of shorter runs too, as Hu et al. (2024, MiniCPM) and Hägele
et al. (2024) use it. The branch of length b forks the run after b - d epochs (d = decay_frac x b, at
least 1), a copy of the weights, optimizer, schedule and EMA, and trains the copy through its own cool-down
(1 - sqrt to zero), one epoch beside each of the run's next d epochs. On the run's epoch b it reports what a
run of b epochs with this warm-up would have ended with; its state rides in the run's checkpoint meanwhile,
so a kill loses at most one epoch of either. Cost: d extra epochs a branch (18 for a 90-epoch branch at
decay_frac 0.2), against b for a separate run."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from trainables.optim import cooldown


def fork_epoch(length: int, decay_frac: float) -> int:
    """The run's epoch after which the branch of `length` epochs forks (its cool-down is the rest)."""
    return length - max(1, round(decay_frac * length))


def branch_problem(branches, epochs: int, schedule: str, warmup_frac: float, decay_frac: float) -> str | None:
    """Why `branches` cannot branch off this run (one line), or None: each must fork from the stable peak."""
    if not branches:
        return None
    if schedule != "wsd":
        return "branches need schedule wsd: a branch forks from the run's steady peak learning rate"
    if len(set(branches)) != len(branches) or any(not isinstance(b, int) or not 2 <= b < epochs for b in branches):
        return f"branches must be distinct whole numbers of epochs from 2 to train.epochs - 1, got {list(branches)}"
    lo, hi = math.ceil(warmup_frac * epochs), math.floor((1 - decay_frac) * epochs)
    for b in branches:
        if not lo <= fork_epoch(b, decay_frac) <= hi:
            return (
                f"branch {b} forks at epoch {fork_epoch(b, decay_frac)}, outside the run's steady peak (epochs "
                f"{lo}..{hi} of {epochs}); use branches between {lo + 2} and {hi}, or a longer train.epochs"
            )
    return None


@dataclass
class Branch:
    """One branch under way: its length, where it forked, and its own copy of what trains."""

    length: int
    start: int  # the run's epoch after which it forked
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: object | None  # trainables.ema.EMA, or None without one

    def state(self) -> dict:
        out = dict(
            length=self.length,
            start=self.start,
            model=self.model.state_dict(),
            optimizer=self.opt.state_dict(),
            scheduler=self.sched.state_dict(),
        )
        if self.ema is not None:
            out["ema"] = self.ema.model.state_dict()
        return out


def fork(length: int, start: int, model, opt, ema, make_opt, steps: int, saved: dict | None = None) -> Branch:
    """A branch of the run as it stands (`model`, `opt`, `ema` after epoch `start`), cooling down over
    `steps` optimizer steps; `saved` (Branch.state) puts back one from a checkpoint instead."""
    m = copy.deepcopy(model)
    o = make_opt(m.parameters())
    o.load_state_dict(copy.deepcopy(opt.state_dict()))  # momentum and the peak's lr as at the fork; a copy:
    # load_state_dict keeps the tensors it is given, and the run's own would then move with the branch
    e = copy.deepcopy(ema) if ema is not None else None
    s = torch.optim.lr_scheduler.LambdaLR(o, lambda i: cooldown(i / steps))
    if saved is not None:
        m.load_state_dict(saved["model"])
        o.load_state_dict(saved["optimizer"])
        s.load_state_dict(saved["scheduler"])
        if e is not None:
            e.model.load_state_dict(saved["ema"])
    return Branch(length, start, m, o, s, e)
