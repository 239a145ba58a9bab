"""A trial's settings as a frozen dataclass: the trainable's own type, so `trainables/` imports nothing
from `orchestrator/` (which builds it from YAML with its strict loader)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from students.registry import canonical
from trainables.branch import branch_problem
from trainables.losses import LOSS_ALIASES, LOSSES, NEEDS_TEACHER

LOSS_NAMES = tuple(LOSSES) + tuple(LOSS_ALIASES)  # the registry's names, in its order, then the old names
CKPT_FILE = "checkpoint.pt"  # in a trial's checkpoint directory: the state train_student reports
FATAL_FILE = "fatal_error.txt"  # in a trial's directory: how its worker died (signal, stack), if it did
# The numbers a trial reports to Tune as numbers: what its scheduler (val_acc by epoch), progress table
# and TensorBoard events show. Tune keeps a running analysis of every number reported (min, max, mean, two
# windows) for each trial for the sweep's life, ~3 KB a number in the driver; the rest of an epoch's
# metrics travel as one string.
TUNE_METRICS = ("epoch", "val_acc", "val_loss", "train_loss")
DETAIL = "detail"


def to_report(metrics: dict) -> dict:
    """An epoch's metrics as a trial reports them to Tune: TUNE_METRICS, and the rest as one JSON string."""
    out = {k: metrics[k] for k in TUNE_METRICS if k in metrics}
    rest = {k: v for k, v in metrics.items() if k not in out}
    return {**out, DETAIL: json.dumps(rest)} if rest else out


def from_report(row: dict) -> dict:
    """A reported row (a result.json line, a Tune result) with its detail string unpacked: every metric at
    the top level, as `train_student` made them. Rows written whole (the in-process runner, older runs) pass
    through; a key at the top level wins over the detail's."""
    if not isinstance(row.get(DETAIL), str):
        return row
    return {**json.loads(row[DETAIL]), **{k: v for k, v in row.items() if k != DETAIL}}


def resume_key(config: dict) -> str:
    """How a Tune trial's config (its variant, its seed: what the stage's grid gave it) names the checkpoint
    it may go on from (trainables/tune_trainable.py, `resumes`)."""
    return json.dumps(config, sort_keys=True)


KWARGS = "student_kwargs"  # the one train key whose value is a mapping: a layer sets some of its keys


def merge_train(base: dict, *layers: dict) -> dict:
    """Train settings as dicts, later layers winning key by key: the sweep's base `train:`, an explicit
    trial's variant, the searcher's draws. `student_kwargs` merges per kwarg, so a search drawing a student's
    shape (`student_kwargs.depths` in search_space, nested as Tune draws it) keeps the base's other kwargs."""
    out = dict(base)
    for layer in layers:
        for k, v in layer.items():
            head, dot, sub = k.partition(".")
            if dot and head == KWARGS:
                out[KWARGS] = {**out.get(KWARGS, {}), sub: v}
            elif k == KWARGS and isinstance(v, dict):
                out[KWARGS] = {**out.get(KWARGS, {}), **v}
            else:
                out[k] = v
    return out


def pack_mask(mask) -> str:
    """A boolean (N,) array as a short string (bits, base64; 5,000 images in ~840 characters)."""
    import base64

    import numpy as np

    m = np.asarray(mask, bool)
    return f"{len(m)}:" + base64.b64encode(np.packbits(m).tobytes()).decode()


def unpack_mask(s: str):
    """pack_mask's inverse: bool (N,)."""
    import base64

    import numpy as np

    n, _, data = s.partition(":")
    return np.unpackbits(np.frombuffer(base64.b64decode(data), np.uint8))[: int(n)].astype(bool)


def _check(cond: bool, msg: str):
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class OptimSettings:
    """How a network is optimized, written once: a trial's (TrainConfig) and a teacher's training (the
    teacher config's `optim:`) share these fields, their defaults and their checks."""

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"  # sgd: with Nesterov momentum
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # sgd (Nesterov)
    weight_decay: float = 5e-4  # a teacher's training leaves BN weights and biases out of it
    schedule: Literal["constant", "cosine", "onecycle", "wsd"] = "onecycle"  # the learning rate over the
    # steps; wsd: warmup-stable-decay (the peak held, then a 1 - sqrt cool-down): shorter runs branch off it
    warmup_frac: float = 0.25  # onecycle, wsd: fraction of steps rising to the peak
    decay_frac: float = 0.2  # wsd: fraction of steps cooling down to zero at the end (and of each branch)
    epochs: int = 10  # passes over the training images
    batch_size: int = 128  # images a step

    def __post_init__(self):
        _check(self.lr > 0, "lr must be > 0")
        _check(self.weight_decay >= 0, "weight_decay must be >= 0")
        _check(0 < self.warmup_frac < 1, "warmup_frac must be in (0, 1)")
        _check(0 < self.decay_frac < 1, "decay_frac must be in (0, 1)")
        _check(
            self.schedule != "wsd" or self.warmup_frac + self.decay_frac <= 1,
            "schedule wsd: warmup_frac + decay_frac must be <= 1 (the warm-up and the cool-down cannot overlap)",
        )
        _check(self.epochs >= 1, "epochs must be >= 1")
        _check(self.batch_size >= 1, "batch_size must be >= 1")


@dataclass(frozen=True)
class TrainConfig(OptimSettings):
    """One trial's settings: flat, so that any key can be a search-space dimension (the optimizer's fields
    come from OptimSettings)."""

    student: str = "starter_model_2"  # a registered student (`kdsweep students` lists them)
    student_kwargs: dict[str, Any] = field(default_factory=dict)  # its arguments, e.g. arch's shape
    loss: Literal[LOSS_NAMES] = "kd"  # kd, lskd, dkd, starter: with the teacher; ce, mse: the no-teacher controls
    alpha: float = 0.9  # weight of the soft (teacher) term; dkd: weight of its target-class term
    temperature: float = 4.0  # T: both logits divided by it before the softmax
    beta: float = 8.0  # dkd: weight of the non-target-class term
    kd_warmup: int = 0  # epochs over which the teacher term's weight rises linearly 0 -> 1
    label_smoothing: float = 0.0  # on the hard-label cross-entropy term
    erase: float = 0.0  # random erasing (Zhong et al. 2017): probability per image of one zeroed
    # rectangle on the student's input; the teacher's logits stay the uncut view's
    mix: Literal["none", "mixup", "cutmix"] = "none"  # function matching (Beyer et al. 2022): the student's
    # input a mix of two training images (mixup: a blend; cutmix: a box of one pasted on the other), its target
    # the teacher's logits on exactly that image; needs the teacher live (teacher.mode: live) and alpha 1
    mix_alpha: float = 1.0  # the mixing ratio lambda ~ Beta(mix_alpha, mix_alpha), one per image (1: uniform)
    tta: Literal["none", "flip"] = "none"  # test-time augmentation of the evaluated (and exported) model:
    # flip averages its logits over the image and its mirror (no parameters);
    # val_acc is then the flip-averaged accuracy. Both are reported each epoch
    time_budget_s: float = 0.0  # wall-clock seconds the trial's epochs may take (0: none): after each epoch
    # the trial refits its length to what the rest fits at its last epochs' pace, never over `epochs` nor
    # under `min_epochs`, and its learning-rate schedule with it (a plan's estimate can be off by 20%)
    min_epochs: int = 1  # with time_budget_s: the length no budget cuts below
    branches: list[int] = field(default_factory=list)  # schedule wsd: shorter runs read off this one, each
    # a cool-down branch ending at that epoch (trainables/branch.py): e.g. [90, 180] in a 300-epoch run
    ema: float = 0.0  # decay per step of an EMA of the weights used for evaluation; 0 = off
    ema_bn: Literal["copy", "average", "recompute"] = "copy"  # the EMA's BN statistics: the live model's,
    # averaged like the weights, or recomputed for the averaged weights on training images before each
    # evaluation (precise BN): the live model's statistics can be far from what the averaged weights produce
    layout: Literal["auto", "channels_last", "contiguous"] = "auto"  # the step's memory layout; auto: the
    # faster of the two on this CPU, timed by the run's plan (channels_last where no plan runs)
    prune_from: str | None = None  # a trained student's checkpoint (student.pt / checkpoint.pt), wider than the
    # budget: it is pruned to `prune_to` parameters, then fine-tuned by this trial
    prune_importance: Literal["magnitude", "taylor"] = "magnitude"  # how channels are ranked for removal
    prune_steps: int = 10  # iterative pruning steps (the ratio rises linearly; stops at the target)
    prune_to: int = 100_000  # parameters (torchinfo) the pruned student may keep
    prune_round_to: int = 8  # pruned layers keep a multiple of this many channels: 8 keeps oneDNN's
    # fast kernels and avoids its AVX2 1x1 bug (trainables/layout.py)
    mean: float = 0.2860  # student input normalization (pixels / 255)
    std: float = 0.3530
    seed: int = 0  # weights, batch order, augmentation
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # bf16: autocast in the train step; auto: bf16 where
    # the hardware has it (avx512_bf16/AMX CPU, GPU)

    def __post_init__(self):
        super().__post_init__()
        if self.loss in LOSS_ALIASES:  # an old name: the run's identity and the trial see today's
            warnings.warn(
                f"loss {self.loss!r} is now called {LOSS_ALIASES[self.loss]!r}; the old name still loads",
                FutureWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "loss", LOSS_ALIASES[self.loss])
        object.__setattr__(self, "student", canonical(self.student))
        _check(0 <= self.alpha <= 1, "alpha must be in [0, 1]")
        _check(self.temperature > 0, "temperature must be > 0")
        _check(self.beta >= 0, "beta must be >= 0")
        _check(0 <= self.kd_warmup <= self.epochs, "kd_warmup must be in 0..epochs")
        _check(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        _check(0 <= self.erase <= 1, "erase must be a probability in [0, 1]")
        _check(self.mix_alpha > 0, "mix_alpha must be > 0 (lambda ~ Beta(mix_alpha, mix_alpha); 1 is uniform)")
        _check(
            self.mix == "none" or (self.alpha == 1 and self.loss in NEEDS_TEACHER),
            f"mix {self.mix} matches the teacher's function on mixed images: set alpha 1 and a distillation loss "
            "(a mixed image has no one hard label)",
        )
        _check(self.tta in ("none", "flip"), f"tta must be none or flip, got {self.tta!r}")
        _check(0 <= self.ema < 1, "ema must be in [0, 1) (a decay per step, e.g. 0.999; 0 turns it off)")
        _check(self.std > 0, "std must be > 0")
        _check(self.prune_steps >= 1, "prune_steps must be >= 1")
        _check(self.prune_to >= 1, "prune_to must be >= 1")
        _check(self.prune_round_to >= 1, "prune_round_to must be >= 1")
        _check(self.time_budget_s >= 0, "time_budget_s must be >= 0 (0: no budget)")
        _check(1 <= self.min_epochs <= self.epochs, "min_epochs must be in 1..epochs")
        _check(
            not (self.time_budget_s and self.branches),
            "time_budget_s refits the run's length, which its branches fork from: use one or the other",
        )
        why = branch_problem(self.branches, self.epochs, self.schedule, self.warmup_frac, self.decay_frac)
        _check(why is None, why or "")
