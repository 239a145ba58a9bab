"""The training loop, written once. A student trial (`trainables/train.py`) and a teacher
(`orchestrator/teacher/model.py`) say only what is their own through a `Loop`: the order of an epoch's
images and its random generator (a seeded permutation; a rank's shard under DDP), how a batch of indices
becomes an input and a target (views, the teacher's logits, erasing), the loss, what follows an optimizer
step (the EMA), and what ends an epoch (evaluation, the report or checkpoint, a time-boxed chunk's stop).
The precision of the step is decided here too, once for both."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from trainables.layout import onednn_native_bf16


def native_bf16(kind: str) -> bool:
    """Whether device kind 'cpu'/'cuda' computes bf16 in hardware (avx512_bf16/AMX CPUs, bf16 GPUs)."""
    return onednn_native_bf16() if kind == "cpu" else kind == "cuda" and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> 'bf16' where the device computes bf16 natively, else 'fp32'; others unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(torch.device(device).type) else "fp32"


def autocast(precision: str, device: str):
    """bf16 autocast for the train step (evaluation stays fp32, as the exported model runs)."""
    kind = torch.device(device).type
    if precision == "bf16" and kind == "cpu" and not native_bf16(kind):
        warnings.warn(
            "precision bf16: this CPU has no native bf16 (avx512_bf16/AMX), so it runs emulated and "
            "slower than fp32; set train.precision: fp32 or auto",
            RuntimeWarning,
            stacklevel=3,
        )
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class Loop:
    """What one training differs by; `fit` runs it."""

    module: nn.Module  # what .train() is called on (the DDP wrapper where there is one)
    forward: Callable[[torch.Tensor], torch.Tensor]  # the step's model: the module, compiled or wrapped
    opt: torch.optim.Optimizer
    sched: Any
    epochs: int
    batch_size: int
    steps_per_epoch: int  # of this worker: the global step is epoch * steps_per_epoch + batch
    precision: str  # 'bf16' or 'fp32' (resolved)
    device: str
    order: Callable[[int], tuple[torch.Tensor, torch.Generator]]  # epoch -> (indices this worker trains, generator)
    batch: Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, Any]]  # indices -> (input, target)
    loss: Callable[[torch.Tensor, Any, int], torch.Tensor]  # fp32 outputs (B, 10), target, global step -> loss
    end_epoch: Callable[[int, float, float, int], bool]  # epoch, train s, loss sum, images -> stop here?
    after_step: Callable[[int], None] | None = None  # after each optimizer step, with the step count (1-based)
    diverged: Callable[[int, int, float, float], str] | None = None  # epoch, batch, lr, loss -> why it stops
    progress: Callable[[int, int, int, float, float], None] | None = None  # every 50 batches: epoch, seen, ...


def fit(loop: Loop, start: int = 0) -> None:
    """Epochs `start`..loop.epochs - 1: per batch the input, the forward in the step's precision, the loss,
    a finite-loss check where asked, the optimizer and scheduler steps; then the epoch's end."""
    cast = autocast(loop.precision, loop.device)
    for epoch in range(start, loop.epochs):
        perm, g = loop.order(epoch)
        loop.module.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        for b, i in enumerate(range(0, len(perm), loop.batch_size)):
            idx = perm[i : i + loop.batch_size]
            step = epoch * loop.steps_per_epoch + b
            x, target = loop.batch(idx, g)
            with cast:
                out = loop.forward(x).float()  # (B, 10)
            loss = loop.loss(out, target, step)
            if loop.diverged is not None and not torch.isfinite(loss):
                raise FloatingPointError(loop.diverged(epoch, b, loop.opt.param_groups[0]["lr"], loss.item()))
            loop.opt.zero_grad(set_to_none=True)
            loss.backward()
            loop.opt.step()
            loop.sched.step()
            if loop.after_step is not None:
                loop.after_step(step + 1)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            if loop.progress is not None and b and b % 50 == 0:
                loop.progress(epoch, seen, len(perm), loss_sum, time.time() - t0)
        if loop.end_epoch(epoch, time.time() - t0, loss_sum, seen):
            break
