"""Batched, enumerable augmentation: a random shift of up to +-p pixels (zero padding)
and an optional horizontal flip, applied to whole batches by one gather.

Every augmented image is one of a finite set of *views*, numbered 0..n_views-1:

    view = ((dy + p) * (2p + 1) + (dx + p)) * F + f       F = 2 if flip else 1

where f = 1 means the image is flipped left-right first and then shifted by
(dy, dx) (content moves down/right for positive values). Because views are small
integers, the teacher's logits can be cached per (image, view) and a trial can
rebuild the exact image the teacher saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ViewSpec:
    shift: int = 2  # pixels, max |dy| and |dx|
    flip: bool = True  # horizontal flip

    def __post_init__(self):
        if not isinstance(self.shift, int) or not 0 <= self.shift <= 8:
            raise ValueError(f"views.shift must be an integer in 0..8 (pixels), got {self.shift!r}")

    @property
    def n_views(self) -> int:
        return (2 * self.shift + 1) ** 2 * (2 if self.flip else 1)

    @property
    def identity(self) -> int:
        """The view id of the unshifted, unflipped image."""
        p = self.shift
        return (p * (2 * p + 1) + p) * (2 if self.flip else 1)

    def decode(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """views (N,) int -> dy (N,), dx (N,), flip (N,) bool."""
        p, F = self.shift, (2 if self.flip else 1)
        f, rest = views % F, views // F
        return rest // (2 * p + 1) - p, rest % (2 * p + 1) - p, f.bool()

    def random(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randint(self.n_views, (n,), generator=generator, device=device)


def apply_views(x: torch.Tensor, views: torch.Tensor, spec: ViewSpec) -> torch.Tensor:
    """x (N, H, W) or (N, C, H, W), any dtype; views (N,) -> the augmented batch, same shape.

    One padded copy and one advanced-indexing gather: no per-sample Python loop.
    """
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(1)
    dy, dx, flip = spec.decode(views.to(x.device))
    if spec.flip:
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    p = spec.shift
    if p:
        n, c, h, w = x.shape
        padded = torch.nn.functional.pad(x, (p, p, p, p))  # (N, C, H+2p, W+2p)
        rows = (torch.arange(h, device=x.device) + p - dy[:, None])[:, None, :, None]  # (N, 1, H, 1)
        cols = (torch.arange(w, device=x.device) + p - dx[:, None])[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]  # (N, C, H, W)
    return x.squeeze(1) if squeeze else x


def to_input(x_u8: torch.Tensor, mean: float, std: float, channels: int, size: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W) -> normalized float (N, channels, H, W) as a model's first conv expects;
    `size` (a teacher's input side, e.g. 56) resizes bilinearly to (size, size) first."""
    x = ((x_u8.to(torch.float32, copy=True).div_(255.0) - mean) / std).unsqueeze(1)  # uint8, or mixed floats
    if size is not None and size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, channels, -1, -1)


def random_erase(
    x: torch.Tensor,
    p: float,
    area: tuple[float, float] = (0.02, 0.25),
    aspect: tuple[float, float] = (0.3, 3.3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017), batched: with probability `p` per image, one rectangle of
    `area` fraction of the image and `aspect` ratio h/w (log-uniform) is set to 0 (the background).

    x (N, H, W) any dtype -> a new tensor, same shape. Masks are built from row and column ranges
    by broadcasting, so there is no per-image loop.
    """
    n, h, w = x.shape
    rand = lambda: torch.rand(n, generator=generator).to(x.device)  # noqa: E731  (draws on the CPU generator)
    a = (area[0] + (area[1] - area[0]) * rand()) * h * w  # (N,) pixels
    r = torch.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * rand())
    eh = torch.sqrt(a * r).round().clamp(1, h).long()  # (N,)
    ew = torch.sqrt(a / r).round().clamp(1, w).long()
    y0 = (rand() * (h - eh + 1).float()).long()
    x0 = (rand() * (w - ew + 1).float()).long()
    on = rand() < p  # (N,) bool
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = (ys[None] >= y0[:, None]) & (ys[None] < (y0 + eh)[:, None])  # (N, H)
    cols = (xs[None] >= x0[:, None]) & (xs[None] < (x0 + ew)[:, None])  # (N, W)
    mask = rows[:, :, None] & cols[:, None, :] & on[:, None, None]  # (N, H, W)
    return x.masked_fill(mask, 0)


def mix_images(
    x: torch.Tensor, kind: str, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each image of x (N, H, W) mixed with a partner from the same batch: (mixed float pixels (N, H, W) on the
    0-255 scale, partner index (N,), lambda (N,): the share of the image's own pixels). `kind` mixup blends,
    lambda x + (1 - lambda) x[partner] (Zhang et al. 2018); cutmix pastes a box of the partner covering
    1 - lambda of the image, lambda then the box's exact share (Yun et al. 2019). lambda ~ Beta(alpha, alpha),
    one per image, drawn with `generator` (a resumed epoch draws the same)."""
    n, h, w = x.shape
    partner = torch.randperm(n, generator=generator).to(x.device)
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    lam = torch.as_tensor(np.random.default_rng(seed).beta(alpha, alpha, n), dtype=torch.float32, device=x.device)
    xf, other = x.float(), x[partner].float()
    if kind == "mixup":
        return lam.view(n, 1, 1) * xf + (1 - lam.view(n, 1, 1)) * other, partner, lam
    if kind != "cutmix":
        raise ValueError(f"mix must be mixup or cutmix, got {kind!r}")
    side = torch.sqrt(1 - lam)  # the box's side as a fraction of the image's
    bh, bw = (side * h).round().long(), (side * w).round().long()
    cy = (torch.rand(n, generator=generator) * h).long().to(x.device)
    cx = (torch.rand(n, generator=generator) * w).long().to(x.device)
    y0, y1 = (cy - bh // 2).clamp(0, h), (cy - bh // 2 + bh).clamp(0, h)
    x0, x1 = (cx - bw // 2).clamp(0, w), (cx - bw // 2 + bw).clamp(0, w)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    box = ((rows.view(1, h, 1) >= y0.view(n, 1, 1)) & (rows.view(1, h, 1) < y1.view(n, 1, 1))) & (
        (cols.view(1, 1, w) >= x0.view(n, 1, 1)) & (cols.view(1, 1, w) < x1.view(n, 1, 1))
    )  # (N, H, W): the partner's pixels
    lam = 1 - box.flatten(1).float().mean(1)  # the share actually kept (a box clipped at the border is smaller)
    return torch.where(box, other, xf), partner, lam
