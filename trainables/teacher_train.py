"""The teacher's training loop, on the engine the students' loop uses (engine.py): a torchvision-layout ResNet
trained with cross-entropy (label smoothing) or distilled from another teacher's logits, in plain PyTorch.
`kdsweep teacher train` runs it in one process or on Ray Train (orchestrator/teacher/train.py)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import torch
import torch.nn as nn

from students.teachers import build_resnet
from trainables.augment import ViewSpec, apply_views, random_erase, to_input
from trainables.engine import Loop, fit, resolve_precision
from trainables.infer import accuracy, predict_logits
from trainables.layout import prepare_for_training
from trainables.losses import kd
from trainables.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)


def fit_teacher(
    cfg,  # a TeacherTrainConfig (orchestrator/config.py)
    train_x,
    train_y,
    val_x,
    val_y,
    *,
    resume: dict | None = None,
    save=None,
    device: str = "cpu",
    rank: int = 0,
    world: int = 1,
    wrap=lambda m: m,
    stop_after_s: float | None = None,
    soft=None,
    init: dict | None = None,
) -> dict:
    """Train a ResNet with cross-entropy (label smoothing) on in-memory uint8 arrays.

    Plain PyTorch. `save(state, metrics, is_best)` is called once per epoch with a
    resumable state (model, optimizer, scheduler, epoch, best); `resume` is such a
    state. With world > 1 each rank trains on its own shard of every epoch's
    permutation and `wrap` is the DDP wrapper. `stop_after_s`: end after the epoch that passes this many
    seconds (a chunk of a long training; the same call with `resume` goes on). `soft`: (N, 10) logits of a
    teacher on the clean training images (cfg.kd_from), distilled with the `kd` loss. `init`: the state dict of
    cfg.init_from, where a new cycle starts from earlier weights. Returns the last metrics.
    """
    t_call = time.time()
    torch.manual_seed(cfg.seed)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    o, pre, spec = cfg.optim, cfg.preprocess, ViewSpec(cfg.augment.shift, cfg.augment.flip)
    # zero-init of each block's last BN: every residual block starts as identity (Goyal et al. 2017)
    model = build_resnet(cfg.arch, pre.channels, zero_init_residual=True)
    prepare_for_training(model, device)  # channels_last: faster convolutions on CPU (oneDNN), guarded
    train_x, train_y = torch.as_tensor(train_x).to(device), torch.as_tensor(train_y).to(device)
    soft = None if soft is None else torch.as_tensor(soft).float().to(device)
    n = len(train_x)
    steps_per_epoch = (n // world) // o.batch_size  # the last partial batch is dropped
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {o.batch_size} is larger than the {n // world} training images per worker")
    # no weight decay on BN and biases (1-d tensors): decaying them only fights normalization
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = make_optimizer(
        [dict(params=decay), dict(params=no_decay, weight_decay=0.0)], o.optimizer, o.lr, o.weight_decay, o.momentum
    )
    sched = make_scheduler(opt, o.schedule, o.epochs * steps_per_epoch, o.warmup_frac, o.decay_frac)
    start, best, history = 0, -1.0, []
    if init is not None and resume is None:  # a new cycle from earlier weights (e.g. the last release)
        model.load_state_dict({k: v.float() for k, v in init.items()})
        log.info(f"initialized from {cfg.init_from}")
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        start, best, history = resume["epoch"] + 1, resume["best_val_acc"], resume["history"]
        log.info(f"resumed after epoch {resume['epoch'] + 1}/{o.epochs} (best val_acc {best:.4f})")
    ddp_model = wrap(model)
    step_model = torch.compile(ddp_model) if cfg.compile else ddp_model  # faster steps, minutes to compile
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    metrics = history[-1] if history else {}

    def order(epoch):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # same order on every rank
        return torch.randperm(n, generator=g)[rank::world][: steps_per_epoch * o.batch_size].to(device), g

    def batch(idx, g):
        views = spec.random(len(idx), generator=g).to(device)
        xb = apply_views(train_x[idx], views, spec)  # (B, 28, 28) uint8
        if cfg.erase > 0:
            xb = random_erase(xb, cfg.erase, generator=g)
        x = to_input(xb, pre.mean, pre.std, pre.channels, pre.size)
        return x.contiguous(memory_format=torch.channels_last), idx  # (B, C, size, size)

    def loss(out, idx, step):
        if soft is None:
            return crit(out, train_y[idx])
        kw = dict(alpha=cfg.kd_alpha, temperature=cfg.kd_temperature, label_smoothing=cfg.label_smoothing)
        return kd(out, soft[idx], train_y[idx], **kw)

    def progress(epoch, seen, total, loss_sum, s):
        if rank == 0:
            log.info(f"  epoch {epoch + 1} {seen}/{total} loss {loss_sum / seen:.4f} {seen / s:.0f} img/s")

    def end_epoch(epoch, train_time, loss_sum, seen):
        nonlocal best, metrics
        t_eval = time.time()
        val_logits = predict_logits(model, val_x, pre, cfg.eval_batch_size, device)
        val_acc = accuracy(val_logits, val_y)
        val_loss = nn.functional.cross_entropy(val_logits, torch.as_tensor(val_y)).item()
        is_best = val_acc > best
        best = max(best, val_acc)
        rate = seen * world / train_time
        epoch_s = train_time + time.time() - t_eval
        eta = (o.epochs - epoch - 1) * epoch_s
        metrics = dict(
            epoch=epoch + 1,
            train_loss=loss_sum / max(seen, 1),
            val_acc=val_acc,
            val_loss=val_loss,
            best_val_acc=best,
            lr=opt.param_groups[0]["lr"],
            images_per_s=rate,
            epoch_s=epoch_s,
            eta_s=eta,
        )
        history.append(metrics)
        if rank == 0:
            log.info(
                f"epoch {epoch + 1}/{o.epochs} train_loss {metrics['train_loss']:.4f} val_acc {val_acc:.4f} "
                f"(best {best:.4f}) {rate:.0f} img/s eta {eta / 60:.1f} min"
            )
        if save is not None:
            state = dict(
                model=model.state_dict(),
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                epoch=epoch,
                best_val_acc=best,
                history=history,
                config=asdict(cfg),
            )
            save(state, metrics, is_best)
        if stop_after_s is not None and time.time() - t_call >= stop_after_s and epoch + 1 < o.epochs:
            log.info(
                f"chunk over after epoch {epoch + 1}/{o.epochs} ({(time.time() - t_call) / 60:.1f} min); "
                "run the same command again to go on from here"
            )
            return True
        return False

    fit(
        Loop(
            module=ddp_model,
            forward=step_model,
            opt=opt,
            sched=sched,
            epochs=o.epochs,
            batch_size=o.batch_size,
            steps_per_epoch=steps_per_epoch,
            precision=resolve_precision(cfg.precision, device),  # bf16 step; evaluation in fp32
            device=device,
            order=order,
            batch=batch,
            loss=loss,
            end_epoch=end_epoch,
            progress=progress,
        ),
        start,
    )
    return metrics
