"""One distillation trial as a plain PyTorch function: `train_student(cfg, data, report)`.

The data arrive as in-memory arrays (from the Ray object store in a sweep, from
anywhere in a test); the teacher arrives as cached logits per (image, view), so
a trial never runs the ResNet-50 (except in `live` mode, the reference).
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from students import count_macs, count_params, create_student, deployed
from trainables.augment import MixSpec, ViewSpec, mix_images, random_erase, to_input
from trainables.branch import fork, fork_epoch
from trainables.config import TrainConfig, pack_mask
from trainables.ema import BN_IMAGES, EMA, recompute_bn
from trainables.engine import Loop, autocast, fit, resolve_precision
from trainables.layout import memory_format, prepare_for_training
from trainables.losses import LOSSES, NEEDS_TEACHER
from trainables.optim import make_optimizer, make_scheduler

REFIT_EPOCHS = 3  # a time budget refits the length after every epoch at the pace of the last this many: a
# CPU's epochs drift (measured: 20 s at the start of a run, 24 s mid-run, experiments/default_s221)
FIT_IMAGES = 5000  # fixed training images (unaugmented) whose accuracy beside val_acc is the fit gap


@dataclass
class TrialData:
    """What a trial trains on. Arrays may be read-only (zero-copy from the object store)."""

    train_x: np.ndarray  # uint8 (N, 28, 28)
    train_y: np.ndarray  # int64 (N,)
    val_x: np.ndarray  # uint8 (M, 28, 28)
    val_y: np.ndarray  # int64 (M,)
    spec: ViewSpec | MixSpec  # the augmentation, as enumerable views (mixed: the cache's mixed views)
    mode: str = "views"  # views | clean | live | mixed | none
    teacher_logits: np.ndarray | None = None  # fp16 (N, n_views, 10) for views and mixed, (N, 1, 10) for clean
    teacher: dict | None = None  # live: {"model": nn.Module, "mean", "std", "channels", "size"}


def _tensor(a, device) -> torch.Tensor:
    with warnings.catch_warnings():  # object-store arrays are read-only; we never write to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.as_tensor(a).to(device)


@torch.no_grad()
def evaluate_tta(
    model: nn.Module,
    x_u8: torch.Tensor,
    y: torch.Tensor,
    mean: float,
    std: float,
    batch_size: int = 1000,
    ttas: tuple[str, ...] = ("none", "flip"),
    masks: dict | None = None,
) -> dict[str, tuple[float, float]]:
    """{tta: (accuracy, mean cross-entropy)} on uint8 images (N, 28, 28): "none" of the plain logits, "flip" of
    the logits averaged over each image and its horizontal mirror (one more forward per image). `masks`, a
    dict, receives {tta: bool (N,)}: which images each gets right (what a paired comparison needs)."""
    model.eval()
    correct, loss = dict.fromkeys(ttas, 0), dict.fromkeys(ttas, 0.0)
    right: dict[str, list] = {k: [] for k in ttas}
    for i in range(0, len(x_u8), batch_size):
        x, yb = to_input(x_u8[i : i + batch_size], mean, std, model.in_chans), y[i : i + batch_size]
        plain = model(x)
        for k in ttas:
            logits = plain if k == "none" else (plain + model(x.flip(-1))) / 2
            ok = logits.argmax(1) == yb
            correct[k] += ok.sum().item()
            right[k].append(ok.cpu())
            loss[k] += F.cross_entropy(logits, yb, reduction="sum").item()
    if masks is not None:
        masks.update({k: torch.cat(v).numpy() for k, v in right.items()})
    return {k: (correct[k] / len(x_u8), loss[k] / len(x_u8)) for k in ttas}


def evaluate(
    model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, mean: float, std: float, batch_size: int = 1000
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on uint8 images (N, 28, 28)."""
    return evaluate_tta(model, x_u8, y, mean, std, batch_size, ttas=("none",))["none"]


def _live_teacher(t: dict, device):
    return t["model"].eval().to(device)


def load_resume(path) -> dict | None:
    """A trial's checkpoint to resume from, or None where it cannot be read whole (cut short by a crash or a
    full disk, before checkpoints were written atomically, or by a copy): the trial then starts over, said
    as a warning, rather than failing at every retry on the same torn file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, IndexError, ValueError, pickle.UnpicklingError) as e:  # a few
        # bytes that are not a zip fall to the legacy unpickler, which fails in any of these ways
        warnings.warn(f"{path}: cannot be read whole ({str(e)[:80]}); the trial starts over", stacklevel=2)
        return None


def _pruned_source(cfg: TrainConfig, data: TrialData):
    """The trained source student of `cfg.prune_from`, pruned to `cfg.prune_to` parameters:
    (model, "pruned", kwargs that rebuild it, what pruning did)."""
    from pathlib import Path

    from students.pruned import layer_shapes
    from trainables.prune import prune_to_budget

    if not Path(cfg.prune_from).is_file():
        raise FileNotFoundError(
            f"prune_from {cfg.prune_from}: no such checkpoint; export the source sweep first "
            "(its student.pt) or point at a trial's checkpoint.pt"
        )
    src = torch.load(cfg.prune_from, map_location="cpu", weights_only=True)
    model = create_student(src["student"], **src["student_kwargs"])
    model.load_state_dict(src["state_dict"])
    batch = None
    if cfg.prune_importance == "taylor":  # gradients of one training batch rank the channels
        idx = torch.arange(min(256, len(data.train_x)))
        x = to_input(_tensor(data.train_x, "cpu")[idx], cfg.mean, cfg.std, model.in_chans)
        batch = (x, _tensor(data.train_y, "cpu")[idx])
    info = prune_to_budget(
        model, cfg.prune_to, cfg.prune_importance, cfg.prune_steps, batch, round_to=cfg.prune_round_to
    )
    info["source"] = f"{src['student']} {dict(src['student_kwargs']) or ''}".strip()
    kwargs = dict(base=src["student"], base_kwargs=dict(src["student_kwargs"]), shapes=layer_shapes(model))
    return model, "pruned", kwargs, info


def train_student(
    cfg: TrainConfig,
    data: TrialData,
    report: Callable[[dict, dict], Any] | None = None,
    resume: dict | None = None,
    device: str = "cpu",
) -> dict:
    """Train `cfg.student` for `cfg.epochs`; call `report(metrics, state)` after every epoch.

    `state` is a checkpoint (student name + kwargs + resolved config + state_dict,
    optimizer, scheduler, epoch) that `resume` accepts to continue. Returns the
    last epoch's metrics.
    """
    if cfg.loss in NEEDS_TEACHER and data.mode == "none":
        raise ValueError(f"loss {cfg.loss!r} needs a teacher; set teacher.checkpoint or use loss ce/mse")
    if cfg.mix != "none" and data.mode not in ("live", "mixed"):
        raise ValueError(
            f"mix {cfg.mix}: cached teacher logits ({data.mode}) are of unmixed views, not of the mixed image the "
            "student sees; set teacher.mode: live or mixed"
        )
    if data.mode == "mixed" and (cfg.mix == "none" or cfg.loss not in NEEDS_TEACHER):
        raise ValueError("teacher.mode mixed trains on mixed images: set train.mix and a distillation loss")
    torch.manual_seed(cfg.seed)
    prune_info = None
    if resume is not None:  # a resumed trial rebuilds what it trained (a pruned student from its shapes)
        name, kwargs = resume["student"], dict(resume["student_kwargs"])
        model = create_student(name, **kwargs)
        prune_info = resume.get("metrics", {}).get("pruned")
    elif cfg.prune_from:
        model, name, kwargs, prune_info = _pruned_source(cfg, data)
    else:
        name, kwargs = cfg.student, dict(cfg.student_kwargs)
        model = create_student(name, **kwargs)
    params = count_params(deployed(model))  # as it ships: a re-parameterizable student counts folded
    macs = count_macs(deployed(model))  # one image's forward: what the shape costs beside what it holds
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    prepare_for_training(model, device, cfg.layout)  # guarded where oneDNN's AVX2 kernel breaks
    fmt = memory_format(cfg.layout)
    spec = data.spec
    train_x, train_y = _tensor(data.train_x, device), _tensor(data.train_y, device)
    val_x, val_y = _tensor(data.val_x, device), _tensor(data.val_y, device)
    needs_teacher = cfg.loss in NEEDS_TEACHER
    logits = (
        _tensor(data.teacher_logits, device) if needs_teacher and data.mode in ("views", "clean", "mixed") else None
    )
    teacher = _live_teacher(data.teacher, device) if needs_teacher and data.mode == "live" else None
    if logits is not None and len(logits) != len(train_x):
        raise ValueError(f"teacher logits cover {len(logits)} images but the trial has {len(train_x)}")

    n = len(train_x)
    steps_per_epoch = -(-n // cfg.batch_size)
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    # the run's length: cfg.epochs, or what a time budget refitted it to (kept in the checkpoint's config)
    length = {"epochs": int(resume["config"].get("epochs", cfg.epochs)) if resume else cfg.epochs}
    sched = make_scheduler(
        opt, cfg.schedule, lambda: length["epochs"] * steps_per_epoch, cfg.warmup_frac, cfg.decay_frac
    )
    loss_fn = LOSSES[cfg.loss]
    precision = resolve_precision(cfg.precision, device)
    start, elapsed = 0, 0.0
    ema = EMA(model, cfg.ema, cfg.ema_bn) if cfg.ema > 0 else None
    bn_x = None
    if ema is not None and cfg.ema_bn == "recompute":  # a fixed seeded subset, unaugmented, in the step's layout
        pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(cfg.seed))[:BN_IMAGES]
        bn_x = to_input(train_x[pick.to(device)], cfg.mean, cfg.std, model.in_chans).contiguous(
            memory_format=memory_format(cfg.layout)
        )
    if resume is not None:
        model.load_state_dict(resume["train_state_dict"] if ema is not None else resume["state_dict"])
        if ema is not None:
            ema.model.load_state_dict(resume["state_dict"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        start, elapsed = resume["epoch"], resume["elapsed_s"]
    spent = [elapsed]  # the elapsed seconds this process started from, then after each of its epochs
    g = torch.Generator().manual_seed(cfg.seed)
    live_cast = autocast(precision, device)
    metrics: dict = {}
    fit_idx = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 1))[:FIT_IMAGES].to(device)

    def make_opt(ps):
        return make_optimizer(ps, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)

    def cool_steps(length):  # a branch's cool-down, in optimizer steps
        return (length - fork_epoch(length, cfg.decay_frac)) * steps_per_epoch

    branches = [  # cool-down branches under way (schedule wsd): forked from the run, trained beside it
        fork(b["length"], b["start"], model, opt, ema, make_opt, cool_steps(b["length"]), saved=b)
        for b in (resume or {}).get("branches", [])
    ]

    def order(epoch):
        g.manual_seed(cfg.seed * 100_003 + epoch)  # an epoch's order is the same after a resume
        return torch.randperm(n, generator=g).to(device), g

    def batch(idx, g):
        views = spec.random(len(idx), generator=g).to(device)  # (B,)
        xb = spec.images(train_x, idx, views)  # (B, 28, 28): uint8, or a mixed view's float pixels (0-255)
        if cfg.mix != "none" and data.mode == "live":  # function matching: the teacher scores this very mix below
            xb = mix_images(xb, cfg.mix, cfg.mix_alpha, generator=g)[0]  # (B, 28, 28) float, 0-255
        t = None
        if logits is not None:  # the cache's logits of this very view (clean: of the unshifted image)
            t = logits[idx, views if data.mode in ("views", "mixed") else 0].float()  # (B, 10)
        elif teacher is not None:  # live: the teacher scores this very view, in the step's precision
            xt = to_input(
                xb, data.teacher["mean"], data.teacher["std"], data.teacher["channels"], data.teacher.get("size")
            ).contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), live_cast:
                t = teacher(xt).float()
        if cfg.erase > 0:  # after the teacher's view: the teacher scored the uncut image
            xb = random_erase(xb, cfg.erase, generator=g)
        x = to_input(xb, cfg.mean, cfg.std, model.in_chans).contiguous(memory_format=fmt)
        return x, (t, train_y[idx])

    def loss(s, target, step):
        warm = min(1.0, step / (cfg.kd_warmup * steps_per_epoch)) if cfg.kd_warmup else 1.0
        t, y = target
        kw = dict(alpha=cfg.alpha, temperature=cfg.temperature, label_smoothing=cfg.label_smoothing, beta=cfg.beta)
        return loss_fn(s, t, y, warm=warm, **kw)

    def diverged(epoch, b, lr, value):
        return f"diverged at epoch {epoch + 1}, step {b}, lr {lr:.3g} (loss {value}); lower train.lr (peak {cfg.lr:g})"

    def shipped(m, e):  # what a checkpoint ships: the EMA (its BN statistics recomputed where asked) or the model
        if e is None:
            return m
        if cfg.ema_bn == "recompute":  # statistics of what the averaged weights compute
            recompute_bn(e.model, bn_x)
        return e.model

    def train_acc(m):  # accuracy on fixed unaugmented training images: the fit gap beside val_acc
        return evaluate_tta(m, train_x[fit_idx], train_y[fit_idx], cfg.mean, cfg.std, ttas=(cfg.tta,))[cfg.tta][0]

    def branch_epoch(br, epoch) -> dict:
        """One epoch of a branch, at the run's epoch index; at its last, what the branch ended with."""
        step_ema = (lambda t: br.ema.update(br.model, t)) if br.ema is not None else None
        fit(
            Loop(br.model, br.model, br.opt, br.sched, epoch + 1, cfg.batch_size, steps_per_epoch, precision,
                 device, order, batch, loss, lambda *a: False, step_ema, diverged),
            epoch,
        )  # fmt: skip
        if epoch + 1 < br.length:
            return {}
        m, masks = shipped(br.model, br.ema), {}
        acc = evaluate_tta(m, val_x, val_y, cfg.mean, cfg.std, masks=masks)
        return dict(
            branch=br.length,
            branch_val_acc=acc[cfg.tta][0],
            branch_val_acc_plain=acc["none"][0],
            branch_train_acc=train_acc(m),
            branch_val_correct=pack_mask(masks[cfg.tta]),
        )

    def end_epoch(epoch, train_s, loss_sum, seen):
        nonlocal elapsed, metrics
        t_eval = time.time()  # the branches' epochs count in the run's elapsed time: they are its cost
        ended: dict = {}
        for br in list(branches):
            ended.update(branch_epoch(br, epoch))
            if epoch + 1 == br.length:
                branches.remove(br)
        for b in cfg.branches:  # a branch forks after the run's epoch it starts cooling from
            if fork_epoch(b, cfg.decay_frac) == epoch + 1:
                branches.append(fork(b, epoch + 1, model, opt, ema, make_opt, cool_steps(b)))
        eval_model = shipped(model, ema)
        masks: dict = {}
        acc = evaluate_tta(eval_model, val_x, val_y, cfg.mean, cfg.std, masks=masks)
        val_acc, val_loss = acc[cfg.tta]  # what selection sees: the model as export ships it
        elapsed += train_s + time.time() - t_eval
        metrics = dict(
            epoch=epoch + 1,
            val_acc=val_acc,
            val_loss=val_loss,
            train_loss=loss_sum / n,
            lr=opt.param_groups[0]["lr"],
            params=params,
            macs=macs,
            images_per_s=n / train_s,
            elapsed_s=elapsed,
            precision=precision,
            threads=torch.get_num_threads(),
            tta=cfg.tta,
            val_acc_plain=acc["none"][0],
            val_acc_flip=acc["flip"][0],
            val_correct=pack_mask(masks[cfg.tta]),  # which validation images val_acc got right: for paired tests
        )
        if ema is not None:  # the live weights' accuracy too: what the average adds, measured in the same run
            metrics["val_acc_raw"] = evaluate(model, val_x, val_y, cfg.mean, cfg.std)[0]
        if epoch + 1 == cfg.epochs:  # the fit gap at the end
            metrics["train_acc"] = train_acc(eval_model)
        metrics.update(ended)
        if prune_info is not None:
            metrics["pruned"] = prune_info
        if cfg.time_budget_s:  # the length that fits: what is left of the budget at the last epochs' pace
            spent.append(elapsed)
            k = min(REFIT_EPOCHS, len(spent) - 1)
            recent = (spent[-1] - spent[-1 - k]) / k
            fits = epoch + 1 + int(max(0.0, cfg.time_budget_s - elapsed) // recent)
            length["epochs"] = max(cfg.min_epochs, epoch + 1, min(length["epochs"], fits))
            metrics["epochs_total"] = length["epochs"]
        if report is not None:
            state = dict(
                student=name,
                student_kwargs=kwargs,
                config={**asdict(cfg), "epochs": length["epochs"]},
                state_dict=eval_model.state_dict(),
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                epoch=epoch + 1,
                elapsed_s=elapsed,
                metrics=metrics,
            )
            if ema is not None:  # the raw weights too, so a resume continues training them
                state["train_state_dict"] = model.state_dict()
            if branches:
                state["branches"] = [br.state() for br in branches]
            report(metrics, state)
        return epoch + 1 >= length["epochs"]  # a refitted length ends the run early

    fit(
        Loop(
            module=model,
            forward=model,
            opt=opt,
            sched=sched,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            steps_per_epoch=steps_per_epoch,
            precision=precision,
            device=device,
            order=order,
            batch=batch,
            loss=loss,
            end_epoch=end_epoch,
            after_step=(lambda t: ema.update(model, t)) if ema is not None else None,  # a resume continues warm-up
            diverged=diverged,
        ),
        start,
    )
    return metrics
