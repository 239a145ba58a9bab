"""The weights a trial evaluates and ships: an exponential moving average of the trained ones (EMA), and the
BatchNorm statistics of what those averaged weights compute (`recompute_bn`, train.ema_bn: recompute)."""

from __future__ import annotations

import torch
import torch.nn as nn


class EMA:
    """Exponential moving average of the weights (Polyak averaging), for evaluation and checkpoints:
    p_ema <- d_t * p_ema + (1 - d_t) * p after step t (t = 1, 2, ...). BN's running statistics are copied
    from the live model (`bn="copy"`), or averaged the same way (`bn="average"`: statistics consistent with
    the averaged weights, as timm's ModelEmaV3 can); integer buffers (batch counts) are always copied.

    d_t = min(decay, (1 + t) / (10 + t)) warms the average up (TensorFlow's ExponentialMovingAverage with
    num_updates): without it, 0.999^t of the random initial weights would remain after t steps (0.24 after
    a 12-epoch run's 1,416), which broke short runs (bench/records.md, the recipe table)."""

    def __init__(self, model: nn.Module, decay: float, bn: str = "copy"):
        import copy

        self.decay, self.bn = decay, bn
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def decay_at(self, t: int) -> float:
        """The decay applied at update number t (1-based)."""
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: nn.Module, t: int):
        # foreach: a few fused kernels per step instead of one per tensor (launch-bound on a GPU)
        torch._foreach_lerp_(
            list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - self.decay_at(t)
        )
        pairs = list(zip(self.model.buffers(), model.buffers()))
        averaged = [(a, b) for a, b in pairs if self.bn == "average" and a.is_floating_point()]
        copied = [(a, b) for a, b in pairs if not (self.bn == "average" and a.is_floating_point())]
        if averaged:
            torch._foreach_lerp_([a for a, _ in averaged], [b for _, b in averaged], 1 - self.decay_at(t))
        if copied:
            torch._foreach_copy_([a for a, _ in copied], [b for _, b in copied])


BN_IMAGES = 4096  # training images whose activations set the EMA's BN statistics (ema_bn: recompute)


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> None:
    """Set every BatchNorm's running statistics to those of `x` (normalized inputs (N, C, H, W)) passing
    through `model` as it is, layer by layer ("precise BN", Wu and Johnson 2021): the mean over the images
    (exact where batch_size divides N), the variance the average of the batches' variances; the model is
    left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i : i + batch_size])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
