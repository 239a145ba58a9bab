"""The teacher: a torchvision ResNet on 28x28 Fashion-MNIST.

Load any reasonable checkpoint (`load_teacher`), evaluate it (`evaluate`), and
train one (`fit_teacher`, plain PyTorch; `orchestrator.teacher.train` runs it on
Ray Train). The preprocessing a teacher expects travels with it in a JSON
sidecar next to the weights (`<weights>.json`).
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from orchestrator.config import Preprocess, TeacherTrainConfig
from orchestrator.errors import UserError
from orchestrator.run.io import atomic_save, sha256_file
from orchestrator.teacher import history
from students import rebuild
from students.teachers import ARCHS as ARCHS
from students.teachers import CIFAR_ARCHS
from students.teachers import NUM_CLASSES as NUM_CLASSES
from students.teachers import TEACHER_ARCHS as TEACHER_ARCHS
from students.teachers import build_resnet as build_resnet
from trainables.augment import ViewSpec, apply_views, random_erase, to_input
from trainables.engine import Loop, fit, resolve_precision
from trainables.layout import model_layout, prepare_for_training
from trainables.losses import kd
from trainables.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)


class TeacherLoadError(UserError):
    """A teacher checkpoint that cannot be used; the message says why and what was expected."""


@dataclass(frozen=True)
class TeacherInfo:
    arch: str
    preprocess: Preprocess
    sha256: str
    path: str
    params: int
    infer_batch: int | None = None  # the loader's own inference batch (a student member's); None: teacher.batch_size


def _strip(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):  # DataParallel/DDP, torch.compile
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def _unwrap(obj, path) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return _unwrap(obj[key], path)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TeacherLoadError(
            f"{path}: holds no state_dict (a dict of tensors, or one under 'state_dict'/"
            "'model'); save the teacher with torch.save(model.state_dict(), path)"
        )
    return obj


def read_state_dict(path: str | Path) -> dict:
    """torch.load(weights_only=True) with an error for each way a file can be wrong."""
    path = Path(path)
    if path.is_dir():
        raise TeacherLoadError(
            f"teacher checkpoint {path} is a directory; pass the weights file in it (e.g. models/teacher/resnet50.pt)"
        )
    if not path.is_file():
        raise TeacherLoadError(
            f"teacher checkpoint {path} not found; train one with `kdsweep teacher train` "
            "or pass --teacher PATH to a ResNet-50 state_dict" + history.hint(path)
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise TeacherLoadError(f"{path} is empty (0 bytes): an interrupted copy or save? Copy or train it again")
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip archive, or a legacy pickle
        raise TeacherLoadError(
            f"{path} is not a PyTorch checkpoint: it is neither a torch.save zip archive nor "
            f"a pickle (it starts with {head!r}); pass the .pt file that torch.save wrote"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e) and "global" not in str(e):  # garbage after a pickle's first byte
            raise TeacherLoadError(
                f"{path}: not a readable PyTorch checkpoint (a damaged pickle: {str(e).splitlines()[-1][:200]})"
            ) from None
        raise TeacherLoadError(
            f"{path}: refused: unpickling it would run code or build objects other than "
            f"tensors ({str(e).splitlines()[0][:200]}). Re-save only the weights with "
            "torch.save(model.state_dict(), path)."
        ) from None
    except Exception as e:  # zip, EOF, legacy-pickle errors: all mean "not a checkpoint we can read"
        raise TeacherLoadError(
            f"{path}: not a readable PyTorch checkpoint (truncated or another format: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    return _strip(_unwrap(obj, path))


def _check_layout(sd: dict, path) -> tuple[str, int]:
    """-> (arch, in_chans) or TeacherLoadError naming what differs."""
    fc = sd.get("fc.weight")
    if fc is not None and fc.dim() == 2 and fc.shape[0] != NUM_CLASSES:
        raise TeacherLoadError(
            f"{path}: the final layer has {fc.shape[0]} classes; Fashion-MNIST needs "
            f"{NUM_CLASSES} (fc.weight {tuple(fc.shape)})"
        )
    conv1 = sd.get("conv1.weight")
    in_chans = conv1.shape[1] if conv1 is not None and conv1.dim() == 4 else 3
    if in_chans not in (1, 3):
        raise TeacherLoadError(f"{path}: conv1 takes {in_chans} channels; expected 1 or 3")
    keys = {k for k in sd if not k.endswith("num_batches_tracked")}
    best = None
    for arch in TEACHER_ARCHS:
        ref = build_resnet(arch, in_chans).state_dict()
        ref_keys = {k for k in ref if not k.endswith("num_batches_tracked")}
        if keys == ref_keys:
            bad = [k for k in keys if tuple(sd[k].shape) != tuple(ref[k].shape)]
            if not bad:
                return arch, in_chans
            raise TeacherLoadError(
                f"{path}: {arch} layout but {bad[0]} has shape {tuple(sd[bad[0]].shape)}, "
                f"expected {tuple(ref[bad[0]].shape)}"
            )
        diff = len(keys ^ ref_keys)
        if best is None or diff < best[0]:
            best = (diff, arch, sorted(ref_keys - keys), sorted(keys - ref_keys))
    _, arch, missing, unexpected = best
    raise TeacherLoadError(
        f"{path}: not a teacher of a known layout (expected torchvision's resnet50(num_classes=10) or one of "
        f"{', '.join(CIFAR_ARCHS)}; "
        f"closest {arch}: {len(missing)} keys missing e.g. {missing[:3]}, {len(unexpected)} unexpected "
        f"e.g. {unexpected[:3]})"
    )


def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def load_teacher(
    path: str | Path, mean: float | None = None, std: float | None = None, device: str = "cpu"
) -> tuple[nn.Module, TeacherInfo]:
    """A teacher in eval mode (fp32) and what it expects as input.

    mean/std: given explicitly (CLI, config) or read from the sidecar JSON that
    `kdsweep teacher train` writes next to the weights; an error when neither.
    """
    sd = read_state_dict(path)
    arch, in_chans = _check_layout(sd, path)
    side = sidecar_path(path)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    mean = mean if mean is not None else meta.get("preprocess", {}).get("mean")
    std = std if std is not None else meta.get("preprocess", {}).get("std")
    if mean is None or std is None:
        raise TeacherLoadError(
            f"{path}: its input normalization is unknown: no {side.name} beside it. Give it "
            "in the config (teacher.mean, teacher.std) or with --teacher-mean/--teacher-std "
            "(the given ResNet-50 uses 0.2860 and 0.3530)"
        )
    model = build_resnet(arch, in_chans)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    # channels_last: 1.09x faster ResNet-50 inference on CPU, same logits (bench/teacher_variants.py)
    model.eval().to(device, memory_format=torch.channels_last)
    info = TeacherInfo(
        arch,
        Preprocess(
            mean=float(mean), std=float(std), channels=in_chans, size=int(meta.get("preprocess", {}).get("size", 28))
        ),
        sha256_file(path),
        str(Path(path).resolve()),
        sum(p.numel() for p in model.parameters()),
    )
    return model, info


def load_member(path: str | Path, device: str = "cpu") -> tuple[nn.Module, TeacherInfo]:
    """A member of a teacher ensemble (teacher.ensemble) in eval mode and what it expects as input: a
    student checkpoint (a trial's checkpoint.pt or an export's student.pt; `arch` is the student's name)
    or a teacher checkpoint (load_teacher)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(state, dict) and "student" in state and "state_dict" in state):
        return load_teacher(path, device=device)
    model = rebuild(state).to(device)
    pre = Preprocess(
        mean=float(state["config"]["mean"]), std=float(state["config"]["std"]), channels=model.in_chans, size=28
    )
    return model, TeacherInfo(
        state["student"],
        pre,
        sha256_file(path),
        str(Path(path).resolve()),
        sum(p.numel() for p in model.parameters()),
        infer_batch=MEMBER_INFER_BATCH,
    )


# Teacher inference batch on CPU: at 1000 images each ~50 MB activation is mmap'd and re-faulted by glibc
# (~1/4 core in system time); 256 is 7% faster for ResNet-50 on 2 cores (bench/teacher_infer.py).
INFER_BATCH = 256
# A student's inference batch in a teacher ensemble: above 64 its activations cross glibc's mmap threshold
# too and 0.4-0.6 cores go to system time; 64 is 1.3x (res3 _s121) to 2.0x (_d111) faster than 256 on
# 2 cores (bench/teacher_infer.py --teacher models/teacher/ensemble/s121.pt --batches 16 32 64 128 256).
MEMBER_INFER_BATCH = 64


class InPrecision(nn.Module):
    """A model whose forwards run under bf16 autocast on `device_type` and return fp32 logits (teacher.precision
    bf16); the identity string of its logits is `identity(sha256, "bf16")`."""

    def __init__(self, model: nn.Module, device_type: str = "cpu"):
        super().__init__()
        self.model, self.device_type = model, device_type

    def forward(self, x):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(x).float()


def in_precision(model: nn.Module, precision: str, device: str = "cpu") -> nn.Module:
    """`model` as it runs in `precision` (fp32: itself)."""
    return InPrecision(model, torch.device(device).type) if precision == "bf16" else model


def identity(sha256: str, precision: str) -> str:
    """What a cache keys a teacher's logits by: its weights, and the precision its forwards ran in (fp32 keeps
    the bare sha256, so caches built before teacher.precision keep their keys)."""
    return sha256 if precision == "fp32" else f"{sha256}+{precision}"


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images_u8: np.ndarray | torch.Tensor,
    pre: Preprocess,
    batch_size: int = INFER_BATCH,
    device: str = "cpu",
    views: torch.Tensor | None = None,
    spec: ViewSpec | None = None,
) -> torch.Tensor:
    """Logits (N, 10) fp32 of uint8 images (N, 28, 28), optionally of view `views[i]` of image i."""
    x = torch.as_tensor(images_u8)
    out, fmt = [], model_layout(model)  # inputs in the model's own layout
    model.eval()
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        if views is not None:
            xb = apply_views(xb, views[i : i + batch_size].to(device), spec)
        x_in = to_input(xb, pre.mean, pre.std, pre.channels, pre.size).contiguous(memory_format=fmt)
        out.append(model(x_in).float().cpu())
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)


def accuracy(logits: torch.Tensor, labels) -> float:
    return (logits.argmax(1) == torch.as_tensor(labels)).float().mean().item()


# ---------------------------------------------------------------- training


def fit_teacher(
    cfg: TeacherTrainConfig,
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
) -> dict:
    """Train a ResNet with cross-entropy (label smoothing) on in-memory uint8 arrays.

    Plain PyTorch. `save(state, metrics, is_best)` is called once per epoch with a
    resumable state (model, optimizer, scheduler, epoch, best); `resume` is such a
    state. With world > 1 each rank trains on its own shard of every epoch's
    permutation and `wrap` is the DDP wrapper. `stop_after_s`: end after the epoch that passes this many
    seconds (a chunk of a long training; the same call with `resume` goes on). `soft`: (N, 10) logits of a
    teacher on the clean training images (cfg.kd_from), distilled with the `kd` loss. Returns the last metrics.
    """
    t_call = time.time()
    torch.manual_seed(cfg.seed)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    o, pre, spec = cfg.optim, cfg.preprocess, ViewSpec(cfg.augment.shift, cfg.augment.flip)
    # zero-init of each block's last BN: every residual block starts as identity (Goyal et al. 2017)
    model = build_resnet(cfg.arch, pre.channels, zero_init_residual=True)
    prepare_for_training(model, device)  # channels_last: ~10% faster convolutions on CPU (oneDNN), guarded
    train_x, train_y = torch.as_tensor(train_x).to(device), torch.as_tensor(train_y).to(device)
    soft = None if soft is None else torch.as_tensor(soft).float().to(device)
    n = len(train_x)
    steps_per_epoch = (n // world) // o.batch_size  # the last partial batch is dropped
    if steps_per_epoch == 0:
        raise UserError(f"batch_size {o.batch_size} is larger than the {n // world} training images per worker")
    # no weight decay on BN and biases (1-d tensors): decaying them only fights normalization
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = make_optimizer(
        [dict(params=decay), dict(params=no_decay, weight_decay=0.0)], o.optimizer, o.lr, o.weight_decay, o.momentum
    )
    sched = make_scheduler(opt, o.schedule, o.epochs * steps_per_epoch, o.warmup_frac)
    start, best, history = 0, -1.0, []
    if cfg.init_from and resume is None:  # a new cycle from earlier weights (e.g. the last release)
        sd = read_state_dict(cfg.init_from)
        model.load_state_dict({k: v.float() for k, v in sd.items()})
        log.info(f"initialized from {cfg.init_from}")
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        start, best, history = resume["epoch"] + 1, resume["best_val_acc"], resume["history"]
        log.info(f"resumed after epoch {resume['epoch'] + 1}/{o.epochs} (best val_acc {best:.4f})")
    ddp_model = wrap(model)
    step_model = torch.compile(ddp_model) if cfg.compile else ddp_model  # ~13% faster here, ~100 s to compile
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


def release_weights(state_dict: dict, out: Path, cfg: TeacherTrainConfig, extra: dict) -> Path:
    """Write `<out>` (fp16 state_dict, ~47 MB for ResNet-50) and its JSON sidecar."""
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in state_dict.items()}
    atomic_save(sd, out)
    meta = dict(
        arch=cfg.arch, num_classes=NUM_CLASSES, preprocess=asdict(cfg.preprocess), sha256=sha256_file(out), **extra
    )
    sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return out
