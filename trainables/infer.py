"""Inference on uint8 Fashion-MNIST arrays, for any classifier here (a teacher, an ensemble member, a student):
logits in the model's own layout and precision, and accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from students.teachers import NUM_CLASSES
from trainables.augment import ViewSpec, apply_views, to_input
from trainables.layout import model_layout

# Inference batches on CPU, kept under glibc's mmap threshold: a larger batch's activations are mmap'd and
# re-faulted on every batch, which spends cores in system time (a ResNet-50 teacher at 256, a student member
# of an ensemble at 64; measured: bench/teacher_infer.py --batches 16 32 64 128 256).
INFER_BATCH = 256
MEMBER_INFER_BATCH = 64


class InPrecision(nn.Module):
    """A model whose forwards run under bf16 autocast on `device_type` and return fp32 logits (teacher.precision
    bf16); the identity string of its logits is `identity(sha256, "bf16")`."""

    def __init__(self, model: nn.Module, device_type: str = "cpu"):
        super().__init__()
        self.model, self.device_type = model, device_type

    def forward(self, x):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(x).float()


def in_precision(model: nn.Module, precision: str, device: str = "cpu") -> nn.Module:
    """`model` as it runs in `precision` (fp32: itself)."""
    return InPrecision(model, torch.device(device).type) if precision == "bf16" else model


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images_u8: np.ndarray | torch.Tensor,
    pre,  # mean, std, channels, size (a teacher's Preprocess)
    batch_size: int = INFER_BATCH,
    device: str = "cpu",
    views: torch.Tensor | None = None,
    spec: ViewSpec | None = None,
) -> torch.Tensor:
    """Logits (N, 10) fp32 of uint8 images (N, 28, 28), optionally of view `views[i]` of image i."""
    x = torch.as_tensor(images_u8)
    out, fmt = [], model_layout(model)  # inputs in the model's own layout
    model.eval()
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        if views is not None:
            xb = apply_views(xb, views[i : i + batch_size].to(device), spec)
        x_in = to_input(xb, pre.mean, pre.std, pre.channels, pre.size).contiguous(memory_format=fmt)
        out.append(model(x_in).float().cpu())
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)


def accuracy(logits: torch.Tensor, labels) -> float:
    return (logits.argmax(1) == torch.as_tensor(labels)).float().mean().item()
