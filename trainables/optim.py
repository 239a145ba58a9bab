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


def lr_factor(step: int, total: int, schedule: str, warmup_frac: float = 0.25) -> float:
    """Multiplier of the peak lr at optimizer step `step` of `total` (0-based)."""
    if schedule == "constant":
        return 1.0
    t = min(step / max(total, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "onecycle":  # linear warm-up from peak/25 to peak, then cosine to ~0 (as torch's OneCycleLR)
        if t < warmup_frac:
            return 0.04 + 0.96 * t / warmup_frac
        return 0.5 * (1 + math.cos(math.pi * (t - warmup_frac) / (1 - warmup_frac)))
    raise ValueError(f"unknown schedule {schedule!r}; use constant, cosine or onecycle")


def make_scheduler(opt, schedule: str, total_steps: int, warmup_frac: float):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, schedule, warmup_frac))
