"""The student registry: a name -> factory map that refuses duplicates and lists names on a miss.

A registered name is a family plus fixed kwargs (a variant); `create_student`
passes extra kwargs through to the factory, which rejects unknown ones.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch.nn as nn

BUDGET = 100_000  # parameters, as torchinfo counts them (masked zeros still count)
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_ALIASES: dict[str, str] = {}  # an old name -> the registered one (configs and checkpoints that use it still load)


def register_student(name: str | None = None, **variant_kwargs):
    """Decorator: register `fn` under `name` (default fn.__name__) with fixed `variant_kwargs`."""

    def deco(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"student {key!r} is already registered; pick another name")
        _REGISTRY[key] = functools.partial(fn, **variant_kwargs) if variant_kwargs else fn
        return fn

    return deco


def register_alias(old: str, new: str):
    _ALIASES[old] = new


def canonical(name: str) -> str:
    """The registered name for `name`: itself, or what an old name became (said once, as a FutureWarning)."""
    if name in _ALIASES:
        warnings.warn(
            f"student {name!r} is now called {_ALIASES[name]!r}; the old name still loads", FutureWarning, stacklevel=3
        )
        return _ALIASES[name]
    return name


def is_student(name: str) -> bool:
    return name in _REGISTRY or name in _ALIASES


def list_students() -> list[str]:
    return sorted(_REGISTRY)


def create_student(name: str, **kwargs) -> nn.Module:
    """Build a registered student; every student has `.in_chans` (1 or 3) and outputs (N, 10) logits."""
    name = canonical(name)
    if name not in _REGISTRY:
        raise KeyError(f"unknown student {name!r}; known students: {', '.join(list_students())}")
    return _REGISTRY[name](**kwargs)


def deployed(model: nn.Module) -> nn.Module:
    """The model as it ships: a family that trains with extra branches (students/rep3.py) folds them here
    (`model.deploy()`, a copy in eval mode); any other model is itself. The budget counts this form."""
    return model.deploy() if hasattr(model, "deploy") else model


def rebuild(state: dict) -> nn.Module:
    """The student a checkpoint holds (a trial's checkpoint.pt or an export's student.pt), in eval mode:
    its registered name and kwargs, then its weights."""
    model = create_student(state["student"], **state["student_kwargs"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def count_params(model: nn.Module) -> int:
    """torchinfo's total parameter count (what the 100k budget is measured in)."""
    import torchinfo

    return torchinfo.summary(model, input_size=(1, model.in_chans, 28, 28), verbose=0, device="cpu").total_params


def count_macs(model: nn.Module) -> int:
    """torchinfo's multiply-adds of one 28x28 image's forward: what a step costs, beside what it holds."""
    import torchinfo

    return torchinfo.summary(model, input_size=(1, model.in_chans, 28, 28), verbose=0, device="cpu").total_mult_adds


def fit_to_budget(name: str, budget: int = BUDGET, key: str = "width", lo: int = 4, hi: int = 512, **kwargs) -> int:
    """The largest integer `key` (e.g. width) for which student `name` stays within `budget` parameters."""

    def params(v):
        return count_params(create_student(name, **{key: v}, **kwargs))

    if params(lo) > budget:
        raise ValueError(f"{name} exceeds {budget} parameters even with {key}={lo}")
    while lo < hi:  # invariant: params(lo) <= budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if params(mid) <= budget else (lo, mid - 1)
    return lo
