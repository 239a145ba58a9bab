"""One distillation trial as a plain PyTorch function: `train_student(cfg, data, report)`.

The data arrive as in-memory arrays (from the Ray object store in a sweep, from
anywhere in a test); the teacher arrives as cached logits per (image, view), so
a trial never runs the ResNet-50 (except in `live` mode, the reference).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from orchestrator.config import TrainConfig
from students import count_params, create_student
from trainables.augment import ViewSpec, apply_views, to_input
from trainables.losses import LOSSES, NEEDS_TEACHER
from trainables.optim import make_optimizer, make_scheduler


@dataclass
class TrialData:
    """What a trial trains on. Arrays may be read-only (zero-copy from the object store)."""
    train_x: np.ndarray                       # uint8 (N, 28, 28)
    train_y: np.ndarray                       # int64 (N,)
    val_x: np.ndarray                         # uint8 (M, 28, 28)
    val_y: np.ndarray                         # int64 (M,)
    spec: ViewSpec                            # the augmentation, as enumerable views
    mode: str = "views"                       # views | clean | live | none
    teacher_logits: np.ndarray | None = None  # fp16 (N, n_views, 10) for views, (N, 1, 10) for clean
    teacher: dict | None = None               # live: {"arch", "state_dict", "mean", "std", "channels"}


def _tensor(a, device) -> torch.Tensor:
    with warnings.catch_warnings():  # object-store arrays are read-only; we never write to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.as_tensor(a).to(device)


@torch.no_grad()
def evaluate(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, mean: float, std: float,
             batch_size: int = 1000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on uint8 images (N, 28, 28)."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x_u8), batch_size):
        logits = model(to_input(x_u8[i:i + batch_size], mean, std, model.in_chans))
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
    return correct / len(x_u8), loss / len(x_u8)


def _live_teacher(t: dict, device):
    from orchestrator.teacher import build_resnet
    model = build_resnet(t["arch"], t["channels"])
    model.load_state_dict(t["state_dict"])
    return model.eval().to(device)


def _native_bf16(kind: str) -> bool:
    """Whether device kind 'cpu'/'cuda' computes bf16 in hardware (avx512_bf16/AMX CPUs, bf16 GPUs)."""
    return torch.cpu._is_avx512_bf16_supported() if kind == "cpu" else kind == "cuda" and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> 'bf16' where the device computes bf16 natively, else 'fp32'; others unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if _native_bf16(torch.device(device).type) else "fp32"


def _autocast(precision: str, device: str):
    """bf16 autocast for the train step (evaluation stays fp32, as the exported model runs)."""
    kind = torch.device(device).type
    if precision == "bf16" and kind == "cpu" and not _native_bf16(kind):
        warnings.warn("precision bf16: this CPU has no native bf16 (avx512_bf16/AMX), so it runs emulated and "
                      "slower than fp32; set train.precision: fp32 or auto", RuntimeWarning, stacklevel=3)
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16")


def train_student(cfg: TrainConfig, data: TrialData, report: Callable[[dict, dict], Any] | None = None,
                  resume: dict | None = None, device: str = "cpu") -> dict:
    """Train `cfg.student` for `cfg.epochs`; call `report(metrics, state)` after every epoch.

    `state` is a checkpoint (student name + kwargs + resolved config + state_dict,
    optimizer, scheduler, epoch) that `resume` accepts to continue. Returns the
    last epoch's metrics.
    """
    if cfg.loss in NEEDS_TEACHER and data.mode == "none":
        raise ValueError(f"loss {cfg.loss!r} needs a teacher; set teacher.checkpoint or use loss ce/mse")
    torch.manual_seed(cfg.seed)
    model = create_student(cfg.student, **cfg.student_kwargs)
    params = count_params(model)
    # channels_last: 1.2-1.6x faster convolutions on CPU (oneDNN) for every registered student
    model.to(device, memory_format=torch.channels_last)
    spec = data.spec
    train_x, train_y = _tensor(data.train_x, device), _tensor(data.train_y, device)
    val_x, val_y = _tensor(data.val_x, device), _tensor(data.val_y, device)
    needs_teacher = cfg.loss in NEEDS_TEACHER
    logits = _tensor(data.teacher_logits, device) if needs_teacher and data.mode in ("views", "clean") else None
    teacher = _live_teacher(data.teacher, device) if needs_teacher and data.mode == "live" else None
    if logits is not None and len(logits) != len(train_x):
        raise ValueError(f"teacher logits cover {len(logits)} images but the trial has {len(train_x)}")

    n = len(train_x)
    steps_per_epoch = -(-n // cfg.batch_size)
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs * steps_per_epoch, cfg.warmup_frac)
    loss_fn = LOSSES[cfg.loss]
    precision = resolve_precision(cfg.precision, device)
    autocast = _autocast(precision, device)
    start, elapsed = 0, 0.0
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        start, elapsed = resume["epoch"], resume["elapsed_s"]
    g = torch.Generator().manual_seed(cfg.seed)
    metrics: dict = {}
    for epoch in range(start, cfg.epochs):
        g.manual_seed(cfg.seed * 100_003 + epoch)  # an epoch's order is the same after a resume
        perm = torch.randperm(n, generator=g).to(device)
        model.train()
        t0, loss_sum = time.time(), 0.0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            views = spec.random(len(idx), generator=g).to(device)                    # (B,)
            xb = apply_views(train_x[idx], views, spec)                               # (B, 28, 28) uint8
            t = None
            if logits is not None:
                t = logits[idx, views if data.mode == "views" else 0].float()         # (B, 10)
            elif teacher is not None:
                with torch.no_grad():
                    t = teacher(to_input(xb, data.teacher["mean"], data.teacher["std"], data.teacher["channels"]))
            x = to_input(xb, cfg.mean, cfg.std, model.in_chans).contiguous(memory_format=torch.channels_last)
            with autocast:
                s = model(x).float()                                                  # (B, 10)
            loss = loss_fn(s, t, train_y[idx], alpha=cfg.alpha, temperature=cfg.temperature,
                           label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {i // cfg.batch_size}: "
                                         f"training diverged; lower lr (now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
        train_s = time.time() - t0
        val_acc, val_loss = evaluate(model, val_x, val_y, cfg.mean, cfg.std)
        elapsed += time.time() - t0
        metrics = dict(epoch=epoch + 1, val_acc=val_acc, val_loss=val_loss, train_loss=loss_sum / n,
                       lr=opt.param_groups[0]["lr"], params=params, images_per_s=n / train_s, elapsed_s=elapsed,
                       precision=precision)
        if report is not None:
            state = dict(student=cfg.student, student_kwargs=dict(cfg.student_kwargs), config=asdict(cfg),
                         state_dict=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                         epoch=epoch + 1, elapsed_s=elapsed, metrics=metrics)
            report(metrics, state)
    return metrics
