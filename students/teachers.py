"""The teachers' architectures: torchvision's ResNet layouts (the mission's ResNet-50; resnet18, and resnet10
for tests) and, for teachers a CPU can train, CIFAR-style ResNets (He et al. 2016, section 4.2) that keep the full 28x28
resolution in their first stage (a 3x3 stem, no stride, no max-pool) where the ImageNet ResNet-50 drops to
7x7 in its stem. Three stages of `n` basic blocks at widths 16k, 32k, 64k (strides 1, 2, 2), a 1x1
projection shortcut where the shape changes, global average pooling, one linear layer.

    cifar_resnet20   n 3, k 1:   272,474 parameters,  31.2 M multiply-adds at 28x28 (torchinfo)
    cifar_resnet32   n 5, k 1:   466,906 parameters,  52.9 M
    cifar_resnet56   n 9, k 1:   855,770 parameters,  96.3 M
    cifar_wrn16_4    n 2, k 4: 2,749,786 parameters, 300.6 M  (the width of WRN-16-4, post-activation
                                                               blocks and no dropout: not Zagoruyko's exact net)

Layer names follow torchvision's (conv1, bn1, layer1..3, fc), so the teacher loader, its layout check and
the channels_last guard treat them like the ResNet-50.
"""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

ARCHS = {  # name -> (block, layers); resnet50 is torchvision's resnet50 layout
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet10": (BasicBlock, [1, 1, 1, 1]),  # tiny: tests build teachers with it
}
NUM_CLASSES = 10

CIFAR_ARCHS = {  # name -> (blocks per stage, width multiplier)
    "cifar_resnet20": (3, 1),
    "cifar_resnet32": (5, 1),
    "cifar_resnet56": (9, 1),
    "cifar_wrn16_4": (2, 4),
}


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    def __init__(self, n: int, k: int, in_chans: int = 3, num_classes: int = 10, zero_init_residual: bool = False):
        super().__init__()
        widths = [16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        cin, stages = 16, []
        for i, w in enumerate(widths):
            stages.append(
                nn.Sequential(
                    *[Block(cin if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
                )
            )
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # every block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, Block):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


def build_cifar(arch: str, in_chans: int = 3, num_classes: int = 10, zero_init_residual: bool = False) -> CifarResNet:
    n, k = CIFAR_ARCHS[arch]
    return CifarResNet(n, k, in_chans, num_classes, zero_init_residual)


TEACHER_ARCHS = (*ARCHS, *CIFAR_ARCHS)


def build_resnet(
    arch: str = "resnet50", in_chans: int = 3, num_classes: int = NUM_CLASSES, zero_init_residual: bool = False
) -> nn.Module:
    """A teacher network: torchvision's ResNet layout (ARCHS) or a CIFAR-style one (CIFAR_ARCHS)."""
    if arch in CIFAR_ARCHS:
        return build_cifar(arch, in_chans, num_classes, zero_init_residual)
    if arch not in ARCHS:
        raise ValueError(f"unknown teacher arch {arch!r}; known: {sorted(TEACHER_ARCHS)}")
    block, layers = ARCHS[arch]
    model = ResNet(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
