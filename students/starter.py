"""The course's starter code's three students, exactly (3-channel 28x28 input; torchinfo: 95,530 / 95,386 /
95,386). They were named seed_model_1..3 (the starter code was called "the seed"); those names still load."""

from __future__ import annotations

import torch.nn as nn

from students.registry import register_alias, register_student


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class StarterModel1(nn.Module):
    """conv 3->48, BN, ReLU, maxpool, dropout 0.5, linear 9408->10."""

    in_chans = 3

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*_conv_bn(3, 48), nn.MaxPool2d(2))  # (N, 48, 14, 14)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(48 * 14 * 14, 10))

    def forward(self, x):
        return self.head(self.features(x))


class StarterModel23(nn.Module):
    """Three 3x3 convs of 32 with BN, two maxpools, dropout, linear 1568->48, [dropout], linear 48->10."""

    in_chans = 3

    def __init__(self, second_dropout: bool):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(3, 32),
            nn.MaxPool2d(2),  # (N, 32, 14, 14)
            *_conv_bn(32, 32),
            nn.MaxPool2d(2),  # (N, 32, 7, 7)
            *_conv_bn(32, 32),
        )  # (N, 32, 7, 7)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(32 * 7 * 7, 48),
            nn.ReLU(inplace=True),
            *([nn.Dropout(0.5)] if second_dropout else []),
            nn.Linear(48, 10),
        )

    def forward(self, x):
        return self.head(self.features(x))


@register_student()
def starter_model_1():
    return StarterModel1()


@register_student()
def starter_model_2():
    return StarterModel23(second_dropout=True)


@register_student()
def starter_model_3():
    return StarterModel23(second_dropout=False)


for _k in (1, 2, 3):
    register_alias(f"seed_model_{_k}", f"starter_model_{_k}")
