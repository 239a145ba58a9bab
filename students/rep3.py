"""Rep3: Res3's shape, trained with re-parameterizable convolutions (Ding et al. 2021, RepVGG; ACNet, DBB):
each 3x3 conv-BN of the stem and the blocks trains as the sum of three branches, a 3x3 conv-BN, a 1x1
conv-BN and (where input and output shapes agree) a BN of the identity, and folds at export into the one
3x3 convolution with a bias that computes the same function in eval mode (`deploy`). Training sees the
extra branches; the deployed student, and the budget, count only the folded convolutions.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn as nn

from students.registry import register_student
from students.res3 import BasicBlock
from students.stages import StagedNet


def _fold(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A bias-free conv followed by an eval-mode BN, as one conv's (weight, bias)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepConvBN(nn.Module):
    """3x3 conv-BN + 1x1 conv-BN (+ BN of the identity where cin == cout and stride 1), summed."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.k3 = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        self.k1 = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x):
        out = self.k3(x) + self.k1(x)
        return out + self.identity(x) if self.identity is not None else out

    @torch.no_grad()
    def folded(self) -> nn.Conv2d:
        """The one 3x3 convolution (with bias) equal to this module in eval mode."""
        w, b = _fold(self.k3[0].weight, self.k3[1])
        w1, b1 = _fold(self.k1[0].weight, self.k1[1])
        w, b = w + nn.functional.pad(w1, (1, 1, 1, 1)), b + b1
        if self.identity is not None:
            eye = torch.zeros_like(w)
            eye[torch.arange(self.cout), torch.arange(self.cin), 1, 1] = 1.0
            wi, bi = _fold(eye, self.identity)
            w, b = w + wi, b + bi
        conv = nn.Conv2d(self.cin, self.cout, 3, self.stride, 1, bias=True)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        return conv


def rep_conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [RepConvBN(cin, cout, stride)]


class Rep3(StagedNet):
    def __init__(self, widths=(16, 32, 64), depths=(1, 1, 1), dropout: float = 0.0, strides=(1, 2, 2)):
        super().__init__(functools.partial(BasicBlock, conv=rep_conv), widths, depths, dropout, strides)
        stem = [RepConvBN(1, widths[0])]  # the stem's conv-BN, re-parameterizable; its ReLU follows
        self.features = nn.Sequential(*stem, *list(self.features)[2:])

    def deploy(self) -> nn.Module:
        return deploy(self)


def deploy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every RepConvBN folded into its 3x3 convolution (a model without
    any is returned as it is): what an export ships and the budget counts."""
    if not any(isinstance(m, RepConvBN) for m in model.modules()):
        return model
    out = copy.deepcopy(model).eval()

    def fold(module: nn.Module):
        for name, child in module.named_children():
            if isinstance(child, RepConvBN):
                setattr(module, name, child.folded())
            else:
                fold(child)

    fold(out)
    return out


@register_student()
def rep3(width: int = 16, depths=(1, 1, 1), widths=None, dropout: float = 0.0, strides=(1, 2, 2)):
    """Res3's arguments; trained with re-parameterizable convolutions, deployed as Res3-like 3x3 convs."""
    widths = tuple(widths) if widths is not None else (width, 2 * width, 4 * width)
    return Rep3(widths, tuple(depths), dropout, tuple(strides))


register_student("rep3_w16_32_76_s121", widths=(16, 32, 76), strides=(1, 2, 1))(rep3)  # the release's shape
