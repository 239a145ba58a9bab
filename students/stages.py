"""The three-stage skeleton both residual families share: a 3x3 conv-BN-ReLU stem at 28x28 on the
1-channel input, three stages (28 -> 14 -> 7) of `block(cin, cout, stride)` (the first block of stages
2 and 3 halves the resolution), global average pooling, dropout and one linear layer to 10 classes."""
from __future__ import annotations

import torch.nn as nn


class StagedNet(nn.Module):
    in_chans = 1

    def __init__(self, block, widths: tuple[int, int, int], depths: tuple[int, int, int], dropout: float = 0.0):
        super().__init__()
        if len(widths) != 3 or len(depths) != 3 or min(depths) < 1 or min(widths) < 1:
            raise ValueError(f"widths and depths must be three integers >= 1, got {widths}, {depths}")
        layers = [nn.Conv2d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                  nn.ReLU(inplace=True)]                                             # (N, w0, 28, 28)
        cin = widths[0]
        for i, (c, d) in enumerate(zip(widths, depths)):
            layers.append(block(cin, c, stride=1 if i == 0 else 2))                 # (N, c, 28 / 2^i, 28 / 2^i)
            layers += [block(c, c) for _ in range(d - 1)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, 10))

    def forward(self, x):
        return self.head(self.features(x))
