"""Distillation losses: pure functions of (student logits, teacher logits, labels, hyperparameters).

Every loss has the signature
`loss(s, t, y, *, alpha, temperature, label_smoothing, beta=8.0, warm=1.0) -> scalar`
with s, t: (N, C) logits (t may be None for losses that use no teacher) and y: (N,) int labels; a loss that
reads fewer hyperparameters takes the rest as `**_`.
`warm` in [0, 1] scales the teacher term during a KD warm-up (train.kd_warmup epochs); `beta` is DKD's.
`LOSSES` is the one registry: each config name's function, whether it reads teacher logits, its formula
(as the report writes it) and its paper; `NEEDS_TEACHER` and the config's `LOSS_NAMES` derive from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _kl_batchmean(s, t, T):
    """KL(softmax(t/T) || softmax(s/T)) summed over classes, averaged over the batch."""
    return F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1), reduction="batchmean", log_target=True)


def kd(
    s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0, beta: float = 8.0, warm: float = 1.0
):
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":

        L = alpha * T^2 * KL(softmax(t/T) || softmax(s/T))  +  (1 - alpha) * CE(s, y)

    KL summed over classes and averaged over the batch ("batchmean"); T^2 keeps
    the soft term's gradient scale independent of T.
    """
    T = temperature
    ce = F.cross_entropy(s, y, label_smoothing=label_smoothing)
    return warm * alpha * T * T * _kl_batchmean(s, t, T) + (1 - alpha) * ce


def _starter_kd_term(s, t, alpha, T):
    # nn.KLDivLoss() with its default reduction="mean" is the mean over all N*C elements, i.e. C times
    # smaller than batchmean; written out as sum / numel to skip PyTorch's deprecation warning for it.
    kl = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="sum") / s.numel()
    return kl * (T * T * 2.0 * alpha)


def starter(
    s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0, beta: float = 8.0, warm: float = 1.0
):
    """The course's starter code's formula, exactly:

        L = KLDivLoss_mean(log_softmax(s/T), softmax(t/T)) * T*T*2*alpha  +  CE(s, y)

    where KLDivLoss_mean averages over all N*C elements (PyTorch's default).
    """
    return warm * _starter_kd_term(s, t, alpha, temperature) + F.cross_entropy(s, y, label_smoothing=label_smoothing)


def starter_combined(
    s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0, beta: float = 8.0, warm: float = 1.0
):
    """The starter code's combined form: ((CE + KD) + CE) / 2 with KD its KL term above."""
    ce = F.cross_entropy(s, y, label_smoothing=label_smoothing)
    return ((ce + warm * _starter_kd_term(s, t, alpha, temperature)) + ce) / 2


def mse(s, t, y, **_):
    """The starter code's MSE variant: mean over N*C of (s - onehot(y))^2 on raw outputs; no teacher."""
    return F.mse_loss(s, F.one_hot(y, s.shape[1]).to(s.dtype))


def ce(s, t, y, *, label_smoothing: float = 0.0, **_):
    """Cross-entropy with optional label smoothing (Szegedy et al. 2016); no teacher: the control."""
    return F.cross_entropy(s, y, label_smoothing=label_smoothing)


def standardize(z, eps: float = 1e-7):
    """Per-sample z-score of logits (N, C): (z - mean) / (std + eps), std with Bessel's correction as in
    the reference code of Sun et al. 2024."""
    return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + eps)


def lskd(
    s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0, beta: float = 8.0, warm: float = 1.0
):
    """Logit-standardized KD, Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation":

        L = alpha * T^2 * KL(softmax(Z(t)/T) || softmax(Z(s)/T))  +  (1 - alpha) * CE(s, y)
        Z(z) = (z - mean_c z) / std_c z        (per sample)

    Standardizing removes the student's need to match the teacher's logit scale and shift; the
    paper's settings are T = 2 ("base temperature") and weights KD 9 : CE 1 (alpha 0.9).
    """
    T = temperature
    soft = _kl_batchmean(standardize(s), standardize(t), T)
    return warm * alpha * T * T * soft + (1 - alpha) * F.cross_entropy(s, y, label_smoothing=label_smoothing)


def dkd(
    s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0, beta: float = 8.0, warm: float = 1.0
):
    """Decoupled KD, Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation":

        L = CE(s, y) + warm * T^2 * (alpha * TCKD + beta * NCKD)
        TCKD = KL([p_t^gt, 1 - p_t^gt] || [p_s^gt, 1 - p_s^gt])           (target vs rest, binary)
        NCKD = KL(softmax(t/T)|non-target || softmax(s/T)|non-target)    (among the non-target classes)

    with p = softmax(logits / T). The paper: alpha 1, beta 8 (2 for small CIFAR ResNet pairs), T 4,
    `warm` rising linearly to 1 over the first 20 epochs (train.kd_warmup).
    """
    T = temperature
    gt = F.one_hot(y, s.shape[1]).bool()  # (N, C)
    ps, pt = F.softmax(s / T, dim=1), F.softmax(t / T, dim=1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1).clamp_min(1e-12)  # (N, 2)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1).clamp_min(1e-12)
    tckd = (bt * (bt.log() - bs.log())).sum(1).mean()
    # non-target distributions: softmax with the target logit pushed to -inf (the paper subtracts 1000)
    ls_nt = F.log_softmax(s / T - 1000.0 * gt, dim=1)
    lt_nt = F.log_softmax(t / T - 1000.0 * gt, dim=1)
    nckd = (lt_nt.exp() * (lt_nt - ls_nt) * ~gt).sum(1).mean()
    ce_term = F.cross_entropy(s, y, label_smoothing=label_smoothing)
    return ce_term + warm * T * T * (alpha * tckd + beta * nckd)


@dataclass(frozen=True)
class Loss:
    """A registered loss: call it like its function. `formula` has {T} {alpha} {one_minus_alpha} {beta}
    placeholders, filled by the report from the winner's settings."""

    fn: Callable
    teacher: bool
    formula: str
    paper: str

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


LOSSES = {
    "kd": Loss(
        kd,
        True,
        "L = {alpha} · T² · KL(softmax(t/T) ‖ softmax(s/T)) + {one_minus_alpha} · CE_ls(s, y), T = {T}",
        "Hinton et al. 2015, Distilling the Knowledge in a Neural Network",
    ),
    "lskd": Loss(
        lskd,
        True,
        "L = {alpha} · T² · KL(softmax(Z(t)/T) ‖ softmax(Z(s)/T)) + {one_minus_alpha} · CE_ls(s, y), "
        "Z = per-sample z-score of the logits, T = {T}",
        "Sun et al., CVPR 2024, Logit Standardization in Knowledge Distillation",
    ),
    "dkd": Loss(
        dkd,
        True,
        "L = CE_ls(s, y) + T² · ({alpha} · TCKD + {beta} · NCKD), T = {T}; TCKD: KL between the binary "
        "(target, rest) probabilities, NCKD: KL among the non-target classes",
        "Zhao et al., CVPR 2022, Decoupled Knowledge Distillation",
    ),
    "starter": Loss(
        starter,
        True,
        "L = KLDiv_mean(log_softmax(s/T), softmax(t/T)) · T² · 2 · {alpha} + CE_ls(s, y), T = {T}",
        "the course's starter code",
    ),
    "starter_combined": Loss(
        starter_combined,
        True,
        "L = ((CE + KD_starter) + CE) / 2, KD_starter as in `starter`, T = {T}",
        "the course's starter code",
    ),
    "mse": Loss(mse, False, "L = mean((s − onehot(y))²), no teacher", "the course's starter code"),
    "ce": Loss(
        ce,
        False,
        "L = CE_ls(s, y): cross-entropy on the labels, no teacher (the control)",
        "label smoothing: Szegedy et al. 2016",
    ),
}
# the names the starter code's losses had ("the seed"): configs and runs that use them still load
LOSS_ALIASES = {"seed": "starter", "seed_combined": "starter_combined"}
NEEDS_TEACHER = frozenset(name for name, loss in LOSSES.items() if loss.teacher)
