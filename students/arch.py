"""Arch: one family whose shape is a search dimension, its width fitted to the parameter budget.

The search draws a shape (per-stage depth, the stride pattern, width ratios, the block, channel attention);
the factory then takes the widest base width `w` for which the network holds at most `budget` parameters,
so no drawn candidate is ever over the budget (TinyNAS's order: fit the budget first, then train in it).
Stage widths are `w * ratios[i]`, rounded to a multiple of 4.

- `strides`: each stage's first stride over the 28x28 stem (students/stages.py): a stage kept at a higher
  resolution costs no parameters, only compute (the release's `_s121` is (1, 2, 1)).
- `block`: `basic` (two dense 3x3 conv-BN, students/res3.py), `dw` (depthwise 3x3 + pointwise 1x1,
  students/resdw.py), `ir` (MobileNetV2's inverted residual: 1x1 expand by `expand`, depthwise 3x3,
  1x1 project).
- `attn`: `none`, `se` (squeeze-excitation, Hu et al. 2018, hidden width c/4) or `eca` (Wang et al. 2020:
  a 1-D convolution of 3 taps across the pooled channels, 3 parameters), on each block's residual branch.
"""

from __future__ import annotations

import functools

import torch.nn as nn

from students.registry import BUDGET, register_student
from students.res3 import BasicBlock
from students.resdw import DSBlock
from students.stages import StagedNet

BLOCKS = ("basic", "dw", "ir")
ATTNS = ("none", "se", "eca")
ROUND = 4  # stage widths are multiples of this (oneDNN's blocked kernels prefer multiples of 4-8)


class SE(nn.Module):
    """Squeeze-excitation: x * sigmoid(W2 relu(W1 avgpool(x))), hidden width max(4, c // 4)."""

    def __init__(self, c: int):
        super().__init__()
        h = max(4, c // 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, h, 1), nn.ReLU(inplace=True), nn.Conv2d(h, c, 1), nn.Sigmoid()
        )

    def forward(self, x):
        return x * self.gate(x)


class ECA(nn.Module):
    """Efficient channel attention: x * sigmoid(conv1d_k3(avgpool(x))) across channels, 3 parameters."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        y = x.mean((2, 3)).unsqueeze(1)  # (N, 1, C)
        return x * self.conv(y).sigmoid().transpose(1, 2).unsqueeze(-1)  # (N, C, 1, 1) gate


class IRBlock(nn.Module):
    """Inverted residual: 1x1 expand (cin * expand) - depthwise 3x3 (stride) - [attn] - 1x1 project, + identity
    where the shape is kept (linear bottleneck: no ReLU after the projection, MobileNetV2)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4, attn=None):
        super().__init__()
        h = cin * expand
        layers = [
            nn.Conv2d(cin, h, 1, bias=False),
            nn.BatchNorm2d(h),
            nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False),
            nn.BatchNorm2d(h),
            nn.ReLU(inplace=True),
        ]
        if attn is not None:
            layers.append(attn(h))
        self.body = nn.Sequential(*layers, nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def make_block(cin: int, cout: int, stride: int = 1, block: str = "basic", attn: str = "none", expand: int = 4):
    """One block of the family, with its attention (if any) at the end of the residual branch."""
    gate = {"none": None, "se": SE, "eca": ECA}[attn]
    if block == "ir":
        return IRBlock(cin, cout, stride, expand, gate)
    b = BasicBlock(cin, cout, stride) if block == "basic" else DSBlock(cin, cout, stride)
    if gate is not None:
        (b.body if block == "basic" else b.pw).append(gate(cout))
    return b


def stage_widths(width: int, ratios) -> tuple[int, int, int]:
    return tuple(max(ROUND, ROUND * round(width * r / ROUND)) for r in ratios)


class Arch(StagedNet):
    def __init__(self, widths, depths, strides, block: str, attn: str, expand: int, dropout: float = 0.0):
        blk = functools.partial(make_block, block=block, attn=attn, expand=expand)
        super().__init__(blk, widths, depths, dropout, strides)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())  # what torchinfo counts for these modules (tested)


def fitted_width(depths, strides, ratios, block, attn, expand, budget: int = BUDGET) -> int:
    """The largest base width whose network holds <= budget parameters (ValueError where none does)."""

    def params(w):
        return _n_params(Arch(stage_widths(w, ratios), depths, strides, block, attn, expand))

    lo, hi = ROUND, 256
    if params(lo) > budget:
        raise ValueError(
            f"arch {block}/{attn} depths {tuple(depths)} ratios {tuple(ratios)} exceeds {budget} parameters even "
            f"at width {lo}; draw fewer blocks or smaller ratios"
        )
    while lo < hi:  # invariant: params(lo) <= budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if params(mid) <= budget else (lo, mid - 1)
    return lo


@register_student()
def arch(
    depths=(1, 1, 1),
    strides=(1, 2, 2),
    ratios=(1.0, 2.0, 4.0),
    block: str = "basic",
    attn: str = "none",
    expand: int = 4,
    width: int | None = None,
    budget: int = BUDGET,
    dropout: float = 0.0,
):
    """A shape of the family; `width` None fits the base width to `budget` parameters (the search's way),
    an integer sets it (the fitted width is `model.width`)."""
    if block not in BLOCKS:
        raise ValueError(f"arch block must be one of {BLOCKS}, got {block!r}")
    if attn not in ATTNS:
        raise ValueError(f"arch attn must be one of {ATTNS}, got {attn!r}")
    if len(ratios) != 3 or min(ratios) <= 0:
        raise ValueError(f"arch ratios must be three positive numbers, got {ratios}")
    depths, strides, ratios = tuple(depths), tuple(strides), tuple(float(r) for r in ratios)
    if width is None:
        width = fitted_width(depths, strides, ratios, block, attn, expand, budget)
    model = Arch(stage_widths(width, ratios), depths, strides, block, attn, expand, dropout)
    model.width = width
    return model
