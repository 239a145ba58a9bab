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
from functools import lru_cache

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

    def images(self, x: torch.Tensor, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """View views[i] of image x[idx[i]]: (B, H, W), x's dtype (what a cache and a trial both rebuild)."""
        return apply_views(x[idx], views.to(x.device), self)


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


@dataclass(frozen=True)
class MixSpec:
    """Cached function matching (teacher.mode mixed): `k` mixed views of every training image, each the image in
    one shift/flip view mixed with a partner image in another, by `kind` (mixup or cutmix) at lambda ~
    Beta(alpha, alpha). View j of image i is fixed by a recipe drawn from `seed` and the number of images, so a
    trial rebuilds exactly the image whose teacher logits the cache holds, on any machine (FKD, Shen and Xing
    2022: the soft label stored per crop)."""

    shift: int = 2
    flip: bool = True
    kind: str = "mixup"
    alpha: float = 1.0
    k: int = 16  # mixed views per image
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("mixup", "cutmix"):
            raise ValueError(f"mix must be mixup or cutmix, got {self.kind!r}")
        if not self.alpha > 0 or not self.k >= 1:
            raise ValueError(f"mix_alpha must be > 0 and mixed views >= 1, got {self.alpha!r}, {self.k!r}")

    @property
    def n_views(self) -> int:
        return self.k

    @property
    def views(self) -> ViewSpec:
        return ViewSpec(self.shift, self.flip)

    def random(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randint(self.k, (n,), generator=generator, device=device)

    def images(self, x: torch.Tensor, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Mixed view views[i] of image x[idx[i]] (x: every training image, (N, H, W)): float (B, H, W) on the
        0-255 scale."""
        r = _recipe(self, len(x))
        i, j = idx.cpu(), views.cpu()
        vs = self.views
        a = apply_views(x[idx], r["own"][i, j].to(x.device), vs)
        b = apply_views(x[r["partner"][i, j].to(x.device)], r["other"][i, j].to(x.device), vs)
        lam, cy, cx = (r[key][i, j].to(x.device) for key in ("lam", "cy", "cx"))
        return mix_pair(a, b, self.kind, lam, cy, cx)[0]


@lru_cache(maxsize=4)
def _recipe(spec: MixSpec, n: int) -> dict[str, torch.Tensor]:
    """Each (image, mixed view)'s partner, the two shift/flip views, lambda and the cutmix box's centre (as
    fractions of the side), drawn once from (spec.seed, n): (n, k) tensors. A partner is never the image."""
    rng = np.random.default_rng([spec.seed, n])
    shape, nv = (n, spec.k), spec.views.n_views
    partner = rng.integers(0, max(n - 1, 1), shape)
    partner = partner + (partner >= np.arange(n)[:, None]) if n > 1 else np.zeros(shape, np.int64)
    out = dict(
        partner=partner,
        own=rng.integers(0, nv, shape),
        other=rng.integers(0, nv, shape),
        lam=rng.beta(spec.alpha, spec.alpha, shape).astype(np.float32),
        cy=rng.random(shape, dtype=np.float32),
        cx=rng.random(shape, dtype=np.float32),
    )
    return {k: torch.from_numpy(v) for k, v in out.items()}


def mix_pair(
    a: torch.Tensor, b: torch.Tensor, kind: str, lam: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images a and b (N, H, W) mixed, each pair by its lambda (N,): (float pixels (N, H, W) on the 0-255 scale,
    the share of a's pixels). mixup blends, lam a + (1 - lam) b (Zhang et al. 2018); cutmix pastes a box of b
    covering 1 - lam of the image, centred at (cy, cx) (fractions of the side), lambda then the box's exact
    share (Yun et al. 2019)."""
    n, h, w = a.shape
    af, bf = a.float(), b.float()
    if kind == "mixup":
        return lam.view(n, 1, 1) * af + (1 - lam.view(n, 1, 1)) * bf, lam
    if kind != "cutmix":
        raise ValueError(f"mix must be mixup or cutmix, got {kind!r}")
    side = torch.sqrt(1 - lam)  # the box's side as a fraction of the image's
    bh, bw = (side * h).round().long(), (side * w).round().long()
    y, x = (cy * h).long(), (cx * w).long()
    y0, y1 = (y - bh // 2).clamp(0, h), (y - bh // 2 + bh).clamp(0, h)
    x0, x1 = (x - bw // 2).clamp(0, w), (x - bw // 2 + bw).clamp(0, w)
    rows, cols = torch.arange(h, device=a.device), torch.arange(w, device=a.device)
    box = ((rows.view(1, h, 1) >= y0.view(n, 1, 1)) & (rows.view(1, h, 1) < y1.view(n, 1, 1))) & (
        (cols.view(1, 1, w) >= x0.view(n, 1, 1)) & (cols.view(1, 1, w) < x1.view(n, 1, 1))
    )  # (N, H, W): b's pixels
    return torch.where(box, bf, af), 1 - box.flatten(1).float().mean(1)  # a box clipped at the border is smaller


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
    cy = cx = lam
    if kind == "cutmix":  # the box's centre, drawn only where there is a box
        cy = torch.rand(n, generator=generator).to(x.device)
        cx = torch.rand(n, generator=generator).to(x.device)
    mixed, lam = mix_pair(x, x[partner], kind, lam, cy, cx)
    return mixed, partner, lam
