"""Pruned students: a registered student whose layers were narrowed by structured pruning (channels
removed, trainables/prune.py), rebuilt exactly from the base student's name and kwargs plus the shape of
every Conv2d, BatchNorm2d and Linear layer, which the checkpoint stores beside the weights.

    create_student("pruned", base="res3", base_kwargs={"widths": [24, 48, 96]}, shapes=layer_shapes(m))
"""

from __future__ import annotations

import torch.nn as nn

from students.registry import create_student, register_student


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """{module name: shape} of every layer pruning can narrow: Conv2d [in, out, groups], BatchNorm2d
    [features], Linear [in, out]."""
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            shapes[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.BatchNorm2d):
            shapes[name] = [m.num_features]
        elif isinstance(m, nn.Linear):
            shapes[name] = [m.in_features, m.out_features]
    return shapes


def _resized(m: nn.Module, shape: list[int]) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        cin, cout, groups = shape
        return nn.Conv2d(cin, cout, m.kernel_size, m.stride, m.padding, m.dilation, groups, m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(shape[0], m.eps, m.momentum, m.affine, m.track_running_stats)
    return nn.Linear(shape[0], shape[1], m.bias is not None)


def reshape(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Replace every recorded layer of `model` by one of the recorded shape (fresh weights), in place."""
    known = dict(model.named_modules())
    for name, shape in shapes.items():
        if name not in known or not isinstance(known[name], (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            raise ValueError(
                f"pruned student: the base has no prunable layer {name!r}; the checkpoint belongs to "
                "another base student"
            )
        parent, _, leaf = name.rpartition(".")
        setattr(known[parent] if parent else model, leaf, _resized(known[name], list(shape)))
    return model


@register_student()
def pruned(base: str = "res3_w16_d111", base_kwargs: dict | None = None, shapes: dict | None = None):
    """The base student with the recorded layer shapes (no shapes: the base as it is)."""
    return reshape(create_student(base, **(base_kwargs or {})), shapes or {})
