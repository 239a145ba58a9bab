"""ResDW: a residual network of depthwise-separable blocks, sized to the parameter budget.

Stem 3x3 conv at 28x28, then three stages (28 -> 14 -> 7) of blocks
`dw3x3-BN-ReLU-pw1x1-BN + identity`, a stride-2 depthwise-separable transition
between stages, global average pooling and one linear layer. 1-channel input:
no parameters spent on repeating grayscale into RGB. Width is the first stage's
channel count; stages use width, 2*width, 4*width.
"""

from __future__ import annotations

import torch.nn as nn

from students.registry import register_student
from students.stages import StagedNet


def _bn(c):
    return nn.BatchNorm2d(c)


class DSBlock(nn.Module):
    """Depthwise 3x3 then pointwise 1x1; residual when shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), _bn(cin), nn.ReLU(inplace=True)
        )
        self.pw = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout))
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.pw(self.dw(x))
        return self.act(x + y if self.residual else y)


class ResDW(StagedNet):
    def __init__(
        self,
        width: int = 32,
        depths: tuple[int, int, int] = (1, 2, 2),
        dropout: float = 0.0,
        strides: tuple[int, int, int] = (1, 2, 2),
    ):
        super().__init__(DSBlock, (width, 2 * width, 4 * width), depths, dropout, strides)


@register_student()
def resdw(width: int = 32, depths=(1, 2, 2), dropout: float = 0.0, strides=(1, 2, 2)):
    """`strides`: each stage's first stride (see students/stages.py)."""
    return ResDW(width, tuple(depths), dropout, tuple(strides))


# Variants fitted to the 100k budget (`kdsweep students` prints their counts).
# fit_to_budget("resdw", depths=...) gives the widest width under 100k for each depth.
register_student("resdw_w53_d122", width=53, depths=(1, 2, 2))(resdw)  # 97,000 params
register_student("resdw_w35_d234", width=35, depths=(2, 3, 4))(resdw)  # 94,860 params
register_student("resdw_w24_d111", width=24, depths=(1, 1, 1))(resdw)  # 8,962 params: fast, for smoke runs
