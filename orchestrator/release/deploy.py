"""The student as it ships: pixels in, logits out, with the test-time views an export chose (`Deployable`);
which views a checkpoint ships (`shipped_tta`) or validation prefers (`choose_tta`); batched prediction.
Read by the export, the release (a release compared at a candidate's views) and `kdsweep predict`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from students import deployed, rebuild

# The test-time views an export can ship: (dy, dx, flip) -> weight, a view as trainables.augment.apply_views
# makes it (mirrored, then shifted, zero fill). "flip_shift" is six views after airbench's: the image and its
# mirror, and both shifted one pixel up-left and one down-right, the unshifted pair weighted as much as the
# two shifted pairs together.
TTA_VIEWS = {
    "none": {(0, 0, False): 1.0},
    "flip": {(0, 0, False): 0.5, (0, 0, True): 0.5},
    "flip_shift": {
        (dy, dx, f): w / 2 for (dy, dx), w in {(0, 0): 0.5, (-1, -1): 0.25, (1, 1): 0.25}.items() for f in (False, True)
    },
}


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(N, C, H, W) moved dy rows down and dx columns right, zero-filled (trainables.augment.apply_views)."""
    if not dy and not dx:
        return x
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    return nn.functional.pad(x, (p, p, p, p))[..., p - dy : p - dy + h, p - dx : p - dx + w]


class Deployable(nn.Module):
    """(N, 1, 28, 28) pixels in [0, 1] -> (N, 10) logits; normalization and channel repetition inside.
    `tta`: the logits averaged over the views of TTA_VIEWS (no parameters; one forward a view)."""

    def __init__(self, student: nn.Module, mean: float, std: float, tta: str = "none"):
        super().__init__()
        if tta not in TTA_VIEWS:
            raise ValueError(f"tta must be one of {list(TTA_VIEWS)}, got {tta!r}")
        self.student = student
        self.mean, self.std, self.channels, self.tta = float(mean), float(std), student.in_chans, tta

    def forward(self, x):
        out = 0
        for (dy, dx, flip), weight in TTA_VIEWS[self.tta].items():
            v = _shift(x.flip(-1) if flip else x, dy, dx)  # mirror, then shift (as apply_views), in pixels:
            v = (v - self.mean) / self.std  # the fill is black, as in training
            out = out + weight * self.student(v.expand(-1, self.channels, -1, -1))
        return out


TTA_CHOICES = ("config", "auto", "none")


def shipped_tta(state: dict, choice: str = "config") -> str:
    """The test-time augmentation a checkpoint ships without further measurement. `choice` "config": the
    trial's train.tta (an export's student.pt names what it shipped) where it helped this checkpoint on
    validation (a flip-averaged trial above plain), else none; "none": plain logits. ("auto" measures every
    view set on validation: `choose_tta`.)"""
    if choice not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES}, got {choice!r}")
    m = state.get("metrics", {})
    tta = {"config": state.get("config", {}).get("tta", "none"), "auto": "flip", "none": "none"}[choice]
    if tta == "flip" and m.get("val_acc_flip", 0) <= m.get("val_acc_plain", 1):
        return "none"
    return tta


def choose_tta(student: nn.Module, cfg: dict, val_x: np.ndarray, val_y: np.ndarray) -> tuple[str, dict]:
    """("auto") The view set with the best validation accuracy (ties: fewer views), and each one's accuracy."""
    acc = {}
    with torch.no_grad():
        for tta in TTA_VIEWS:
            logits = predict(Deployable(student, cfg["mean"], cfg["std"], tta).eval(), val_x)
            acc[tta] = round(float((logits.argmax(1).numpy() == val_y).mean()), 4)
    return max(acc, key=lambda t: (acc[t], -len(TTA_VIEWS[t]))), acc


def deployable(state: dict) -> Deployable:
    """A checkpoint (a trial's checkpoint.pt or an export's student.pt) as the pixels-in model, in eval mode."""
    student = deployed(rebuild(state))  # a re-parameterizable student folded, as it ships
    return Deployable(student, state["config"]["mean"], state["config"]["std"], shipped_tta(state)).eval()


@torch.no_grad()
def predict(model: nn.Module, images_u8: np.ndarray, batch_size: int = 1000) -> torch.Tensor:
    x = torch.as_tensor(images_u8).float().div_(255).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
