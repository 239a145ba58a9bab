"""Optimizers and per-step learning-rate schedules shared by the student and teacher loops."""

from __future__ import annotations

import math

import torch


def make_optimizer(params, optimizer: str, lr: float, weight_decay: float, momentum: float = 0.9):
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if optimizer == "adam":  # the seed's optimizer; L2 penalty added to the gradient
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; use sgd, adam or adamw")


def cooldown(t: float) -> float:
    """The learning rate's multiplier at fraction t of a cool-down from the peak to zero: 1 - sqrt(t), the
    shape Hägele et al. (2024) found best for warmup-stable-decay runs."""
    return 1.0 - math.sqrt(min(max(t, 0.0), 1.0))


def lr_factor(step: int, total: int, schedule: str, warmup_frac: float = 0.25, decay_frac: float = 0.2) -> float:
    """Multiplier of the peak lr at optimizer step `step` of `total` (0-based)."""
    if schedule == "constant":
        return 1.0
    t = min(step / max(total, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule in ("onecycle", "wsd") and t < warmup_frac:  # linear warm-up from peak/25 to the peak
        return 0.04 + 0.96 * t / warmup_frac
    if schedule == "onecycle":  # then cosine to ~0 (as torch's OneCycleLR)
        return 0.5 * (1 + math.cos(math.pi * (t - warmup_frac) / (1 - warmup_frac)))
    if schedule == "wsd":  # warmup-stable-decay: the peak until the last decay_frac, then the cool-down
        return 1.0 if t < 1 - decay_frac else cooldown((t - (1 - decay_frac)) / decay_frac)
    raise ValueError(f"unknown schedule {schedule!r}; use constant, cosine, onecycle or wsd")


def make_scheduler(opt, schedule: str, total_steps, warmup_frac: float, decay_frac: float = 0.2):
    """The per-step schedule over `total_steps` (an int, or a callable giving it now: a length refitted
    under way, trainables/train.py)."""
    total = total_steps if callable(total_steps) else (lambda: total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total(), schedule, warmup_frac, decay_frac))
