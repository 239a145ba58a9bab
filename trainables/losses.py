"""Distillation losses: pure functions of (student logits, teacher logits, labels, hyperparameters).

Every loss has the signature `loss(s, t, y, *, alpha, temperature, label_smoothing) -> scalar`
with s, t: (N, C) logits (t may be None for losses that use no teacher) and y: (N,) int labels.
`LOSSES` maps config names to them; `NEEDS_TEACHER` says which read teacher logits.
"""
from __future__ import annotations

import torch.nn.functional as F


def _kl_batchmean(s, t, T):
    """KL(softmax(t/T) || softmax(s/T)) summed over classes, averaged over the batch."""
    return F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1), reduction="batchmean", log_target=True)


def kd(s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0):
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":

        L = alpha * T^2 * KL(softmax(t/T) || softmax(s/T))  +  (1 - alpha) * CE(s, y)

    KL summed over classes and averaged over the batch ("batchmean"); T^2 keeps
    the soft term's gradient scale independent of T.
    """
    T = temperature
    return alpha * T * T * _kl_batchmean(s, t, T) + (1 - alpha) * F.cross_entropy(s, y, label_smoothing=label_smoothing)


def _seed_kd_term(s, t, alpha, T):
    # nn.KLDivLoss() with its default reduction="mean" is the mean over all N*C elements, i.e. C times
    # smaller than batchmean; written out as sum / numel to skip PyTorch's deprecation warning for it.
    kl = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="sum") / s.numel()
    return kl * (T * T * 2.0 * alpha)


def seed(s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0):
    """The seed's formula, exactly:

        L = KLDivLoss_mean(log_softmax(s/T), softmax(t/T)) * T*T*2*alpha  +  CE(s, y)

    where KLDivLoss_mean averages over all N*C elements (PyTorch's default).
    """
    return _seed_kd_term(s, t, alpha, temperature) + F.cross_entropy(s, y, label_smoothing=label_smoothing)


def seed_combined(s, t, y, *, alpha: float, temperature: float, label_smoothing: float = 0.0):
    """The seed's combined form: ((CE + KD) + CE) / 2 with KD the seed's KL term above."""
    ce = F.cross_entropy(s, y, label_smoothing=label_smoothing)
    return ((ce + _seed_kd_term(s, t, alpha, temperature)) + ce) / 2


def mse(s, t, y, *, alpha: float = 0.0, temperature: float = 1.0, label_smoothing: float = 0.0):
    """The seed's MSE variant: mean over N*C of (s - onehot(y))^2 on raw outputs; no teacher."""
    return F.mse_loss(s, F.one_hot(y, s.shape[1]).to(s.dtype))


def ce(s, t, y, *, alpha: float = 0.0, temperature: float = 1.0, label_smoothing: float = 0.0):
    """Cross-entropy with optional label smoothing (Szegedy et al. 2016); no teacher: the control."""
    return F.cross_entropy(s, y, label_smoothing=label_smoothing)


LOSSES = {"kd": kd, "seed": seed, "seed_combined": seed_combined, "mse": mse, "ce": ce}
NEEDS_TEACHER = {"kd", "seed", "seed_combined"}
