"""Res3: a small ResNet of plain 3x3 convolutions (He et al. 2016, the CIFAR "ResNet-8/20" shape), fitted to
the parameter budget and chosen for accuracy per second of CPU.

Why plain 3x3: oneDNN runs a dense 3x3 convolution at a much higher fraction of the
CPU's peak than a depthwise one (little arithmetic per byte moved), so at equal
parameters Res3 trains faster than ResDW on the 2-core machine (`kdsweep students`
measures both).

Stem 3x3 conv at 28x28, then three stages (28 -> 14 -> 7) of basic blocks
`conv3x3-BN-ReLU-conv3x3-BN + shortcut` (1x1 conv + BN shortcut where the shape changes),
global average pooling and one linear layer. 1-channel input.
"""

from __future__ import annotations

import torch.nn as nn

from students.registry import register_student
from students.stages import StagedNet


def conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    """A 3x3 convolution and its BN, as the modules a block's body lists."""
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """`conv`-ReLU-`conv` + shortcut, ReLU; `conv(cin, cout, stride)` gives a 3x3 conv-BN's modules (rep3
    passes its re-parameterizable one)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, conv=conv_bn):
        super().__init__()
        self.body = nn.Sequential(*conv(cin, cout, stride), nn.ReLU(inplace=True), *conv(cout, cout))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class Res3(StagedNet):
    def __init__(
        self,
        widths: tuple[int, int, int] = (16, 32, 64),
        depths: tuple[int, int, int] = (1, 1, 1),
        dropout: float = 0.0,
        strides: tuple[int, int, int] = (1, 2, 2),
    ):
        super().__init__(BasicBlock, widths, depths, dropout, strides)


@register_student()
def res3(width: int = 16, depths=(1, 1, 1), widths=None, dropout: float = 0.0, strides=(1, 2, 2)):
    """`width` w gives stages (w, 2w, 4w); `widths` sets all three explicitly and overrides it;
    `strides` each stage's first stride (see students/stages.py)."""
    widths = tuple(widths) if widths is not None else (width, 2 * width, 4 * width)
    return Res3(widths, tuple(depths), dropout, tuple(strides))


# Variants fitted to the 100k budget (`kdsweep students` prints their counts and training speed).
register_student("res3_w16_d111", width=16, depths=(1, 1, 1))(res3)  # 77,754 params (ResNet-8 shape)
# 96,906 params: the last stage wider (parameters are cheap at 7x7)
register_student("res3_w16_32_76_d111", widths=(16, 32, 76), depths=(1, 1, 1))(res3)
register_student("res3_w12_d222", width=12, depths=(2, 2, 2))(res3)  # 98,782 params (ResNet-14 shape)
# The same 96,906 weights run at a higher resolution (no parameters; slower per training image, `kdsweep students`):
register_student("res3_w16_32_76_s121", widths=(16, 32, 76), strides=(1, 2, 1))(res3)  # stages at 28, 14, 14
register_student("res3_w16_32_76_s112", widths=(16, 32, 76), strides=(1, 1, 2))(res3)  # stages at 28, 28, 14
