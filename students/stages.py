"""The three-stage skeleton both residual families share: a 3x3 conv-BN-ReLU stem at 28x28 on the
1-channel input, three stages of `block(cin, cout, stride)` (by default 28 -> 14 -> 7: the first block
of stages 2 and 3 halves the resolution), global average pooling, dropout and one linear layer to 10
classes.

`strides` sets each stage's first stride. A stage kept at a higher resolution costs no parameters,
only compute: strides (1, 2, 1) runs the widest stage at 14x14 instead of 7x7, four times its
arithmetic on the same weights (for a budget that counts parameters, not FLOPs)."""

from __future__ import annotations

import torch.nn as nn


class StagedNet(nn.Module):
    in_chans = 1

    def __init__(
        self,
        block,
        widths: tuple[int, int, int],
        depths: tuple[int, int, int],
        dropout: float = 0.0,
        strides: tuple[int, int, int] = (1, 2, 2),
    ):
        super().__init__()
        if len(widths) != 3 or len(depths) != 3 or min(depths) < 1 or min(widths) < 1:
            raise ValueError(f"widths and depths must be three integers >= 1, got {widths}, {depths}")
        if len(strides) != 3 or any(s not in (1, 2) for s in strides):
            raise ValueError(f"strides must be three values of 1 or 2 (one per stage), got {strides}")
        layers = [
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]  # (N, w0, 28, 28)
        cin = widths[0]
        for c, d, s in zip(widths, depths, strides):
            layers.append(block(cin, c, stride=s))  # (N, c, 28 / 2^i, 28 / 2^i) by default
            layers += [block(c, c) for _ in range(d - 1)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, 10))

    def forward(self, x):
        return self.head(self.features(x))
