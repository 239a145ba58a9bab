"""Structured pruning with Torch-Pruning (Fang et al., CVPR 2023, "DepGraph: Towards Any Structural
Pruning"): whole channels are removed, together with every channel coupled to them (residual additions,
BN, depthwise groups), so torchinfo's parameter count really drops (masks that zero weights would not
lower it). Iterative: the source is narrowed a little at a time until its count is at most the target.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from students import count_params


def prune_to_budget(
    model: nn.Module,
    target: int,
    importance: Literal["magnitude", "taylor"] = "magnitude",
    steps: int = 10,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_ratio: float = 0.9,
    round_to: int = 8,
) -> dict:
    """Narrow `model` in place until count_params(model) <= target; returns what was done.

    importance: "magnitude" (L2 norm of each channel's weights) or "taylor" (|weight x gradient|, first
    order Taylor, Molchanov et al. 2019; needs `batch` = (inputs, labels) for the gradient). The channel
    pruning ratio rises linearly to `max_ratio` over `steps` steps; pruning stops at the first step that
    reaches the target. The classifier's outputs are never pruned. Every pruned layer keeps a multiple of
    `round_to` channels (Torch-Pruning's round_to): 8 fills oneDNN's SIMD blocks and never leaves the fewer
    than 8 input channels that its AVX2 1x1 stride-2 backward breaks on (trainables/layout.py).
    """
    import torch_pruning as tp

    before = count_params(model)
    if before <= target:
        return dict(params_before=before, params_after=before, steps_taken=0, importance=importance, round_to=round_to)
    imp = tp.importance.TaylorImportance() if importance == "taylor" else tp.importance.MagnitudeImportance(p=2)
    if importance == "taylor" and batch is None:
        raise ValueError("taylor importance needs a batch (inputs, labels) for its gradients")
    example = torch.zeros(2, model.in_chans, 28, 28)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=imp,
        iterative_steps=steps,
        pruning_ratio=max_ratio,
        ignored_layers=head,
        round_to=round_to,
    )
    was_training = model.training
    for step in range(1, steps + 1):  # noqa: B007 (steps_taken reads the last one)
        if importance == "taylor":
            model.zero_grad()
            model.eval()
            F.cross_entropy(model(batch[0]), batch[1]).backward()
        pruner.step()
        if count_params(model) <= target:
            break
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    after = count_params(model)
    if after > target:
        raise ValueError(
            f"pruning stopped at {after:,} parameters after {steps} steps (max ratio {max_ratio}), over "
            f"the target {target:,}; raise prune_steps or start from a smaller source"
        )
    return dict(params_before=before, params_after=after, steps_taken=step, importance=importance, round_to=round_to)
