"""Two models compared on the same images, paired: a difference the images cannot tell from noise is a tie.

Two accuracies measured on one validation split are not independent samples: what decides between the two
models is only the images on which they disagree. McNemar's exact test (Dietterich 1998) asks whether, of
the b + c images exactly one of them gets right, the split b : c is further from even than chance would
make it: p = min(1, 2 * P(X <= min(b, c))), X ~ Binomial(b + c, 1/2). At p >= ALPHA the two are a tie,
and a tie is broken by a stated rule, never by the sign of the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # the test's level: below it, a difference is called real


def mcnemar_p(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value for b images only the first model got right, c only the second."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact: Python's integers hold 2**n, the division rounds once


@dataclass(frozen=True)
class Paired:
    """Model a against model b on the same n images."""

    n: int
    acc_a: float
    acc_b: float
    only_a: int  # images a gets right and b wrong
    only_b: int
    p: float
    alpha: float = ALPHA

    @property
    def diff(self) -> float:
        return self.acc_a - self.acc_b

    @property
    def tie(self) -> bool:
        return self.p >= self.alpha

    @property
    def a_better(self) -> bool:
        """a is better by a margin the test calls real."""
        return not self.tie and self.only_a > self.only_b

    def sentence(self, a: str = "a", b: str = "b") -> str:
        verdict = (
            f"a tie (p {self.p:.2g} >= {self.alpha:g})"
            if self.tie
            else f"{a if self.only_a > self.only_b else b} better (p {self.p:.2g} < {self.alpha:g})"
        )
        return (
            f"{a} {self.acc_a:.4f} against {b} {self.acc_b:.4f} on the same {self.n:,} images "
            f"({self.diff:+.4f}): they disagree on {self.only_a + self.only_b} ({self.only_a} only {a} gets right, "
            f"{self.only_b} only {b}); McNemar's exact test: {verdict}"
        )

    def record(self) -> dict:
        return dict(
            n=self.n,
            acc_a=self.acc_a,
            acc_b=self.acc_b,
            only_a=self.only_a,
            only_b=self.only_b,
            p=self.p,
            tie=self.tie,
        )


def paired(correct_a, correct_b, alpha: float = ALPHA) -> Paired:
    """Paired from two boolean arrays (N,): which images each model classifies correctly, in the same order."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired: two models must be scored on the same images, got shapes {a.shape}, {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    return Paired(len(a), float(a.mean()), float(b.mean()), only_a, only_b, mcnemar_p(only_a, only_b), alpha)
