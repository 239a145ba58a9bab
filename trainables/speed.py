"""What a student's training step costs here: images/s of bare SGD steps on random data (no input pipeline,
no evaluation), what the sweep's plan and `kdsweep students` time."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from students import create_student
from trainables.engine import autocast, resolve_precision
from trainables.layout import memory_format, prepare_for_training


def train_speed(
    name: str,
    batch_size: int = 128,
    steps: int = 20,
    warmup: int = 3,
    precision: str = "fp32",
    layout: str = "channels_last",
    **student_kwargs,
) -> float:
    """Training images/s of student `name` alone (forward, CE, backward, SGD step; random data in `layout`):
    the student's compute bound, for comparing families (and layouts) on this machine."""
    model = create_student(name, **student_kwargs).train()
    prepare_for_training(model, layout=layout)
    return step_rate(model, model.in_chans, batch_size, steps, warmup, resolve_precision(precision, "cpu"), layout)


def step_rate(
    model, in_chans: int, batch_size: int, steps: int, warmup: int, precision: str, layout: str = "channels_last"
) -> float:
    """Training images/s of `model` as it is (prepared for training): `steps` timed SGD steps on random
    data in `layout` after `warmup` untimed ones, in `precision`."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, in_chans, 28, 28).contiguous(memory_format=memory_format(layout))
    y = torch.randint(10, (batch_size,))
    cast = autocast(precision, "cpu")
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with cast:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0)
