"""How early a trial can be judged, from recorded learning curves, and the ASHA rungs that follow.

A curve is one trial trained to its end with its validation accuracy recorded every epoch (a folder of
`<name>.jsonl` files: a head line with the trial's settings, then one line per epoch; what
`experiments/search_fidelity/collect.py` writes). From a set of them:

- the rank correlation (Spearman's rho, Kendall's tau-b) between the accuracy at epoch k and the final one,
  across configurations: how well a judgement at k orders the trials as the end would;
- the seed spread at k: |difference| between two seeds of one configuration, beside the spread between
  configurations (a judgement at k can only resolve differences larger than its seed noise);
- per lever (pairs of configurations that differ in one setting): the first epoch from which the better of
  the two at every later epoch is the better at the end.

These are analyses. The rule for ASHA is the regret rule (bench/regret.py: what a cut costs the winner, not how
well noise-bound candidates keep their order): `bench/search_regret.py` fits it to the recorded curves and
writes it into orchestrator/rungs.json, which `sweep.grace_period: auto` / `reduction_factor: auto` apply to
the search's own length (orchestrator/rungs.py). Pure numpy: no Ray.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MIN_RHO = 0.8  # Spearman's rho a table marks as "ranks hold" (an analysis; rungs follow bench/regret.py)


@dataclass
class Curve:
    """One trial's record: its settings (`variant` over the config's base `train:`), per-epoch metrics."""

    name: str
    variant: dict
    config: str = ""
    epochs: list[dict] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return int(self.variant.get("seed", 0))

    @property
    def key(self) -> tuple:
        """The configuration without its seed: what two seeds of one configuration share."""
        return (self.config, tuple(sorted((k, str(v)) for k, v in self.variant.items() if k != "seed")))

    def at(self, metric: str, k: int) -> float:
        """`metric` after epoch k (1-based)."""
        return float(self.epochs[k - 1][metric])

    def final(self, metric: str) -> float:
        return self.at(metric, len(self.epochs))

    def __len__(self) -> int:
        return len(self.epochs)


def load_curves(folder: str | Path, length: int | None = None) -> list[Curve]:
    """Every `*.jsonl` curve under `folder`; with `length`, only those recorded to that many epochs (a trial
    still running, or diverged, is left out: its end is unknown)."""
    out = []
    for p in sorted(Path(folder).glob("*.jsonl")):
        lines = [json.loads(s) for s in p.read_text().splitlines() if s.strip()]
        if not lines:
            continue
        head, rows = lines[0], [r for r in lines[1:] if "val_acc" in r and not r.get("diverged")]
        c = Curve(p.stem, dict(head.get("variant", {})), head.get("config", ""), rows)
        if length is None or len(c) == length:
            out.append(c)
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a, b) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (average ranks for ties)."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den else float("nan")


def kendall(a, b) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a) (n0 - ties_b)) over all pairs."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    den = math.sqrt(np.count_nonzero(da) * np.count_nonzero(db))
    return float((da * db).sum() / den) if den else float("nan")


def seed_pairs(curves: list[Curve]) -> list[tuple[Curve, Curve]]:
    """Pairs of curves of one configuration with different seeds."""
    by: dict[tuple, list[Curve]] = {}
    for c in curves:
        by.setdefault(c.key, []).append(c)
    return [(g[0], g[1]) for g in by.values() if len(g) >= 2]


def checkpoints(length: int) -> list[int]:
    """The epochs a table reports: 1, 2, 5, then every 5 up to the end."""
    return sorted({k for k in (1, 2, 5, *range(10, length + 1, 5), length) if k <= length})


def one_per_config(curves: list[Curve]) -> list[Curve]:
    """One curve per configuration (its lowest seed), so a seed pair does not count one configuration twice."""
    firsts: dict[tuple, Curve] = {}
    for c in sorted(curves, key=lambda c: c.seed):
        firsts.setdefault(c.key, c)
    return list(firsts.values())


def fidelity_table(
    curves: list[Curve], metric: str, final_metric: str | None = None, epochs: list[int] | None = None
) -> list[dict]:
    """Per epoch k: rank correlation of `metric` at k with `final_metric` at the end (one seed per
    configuration: the seed-0 curve, so a seed pair does not count one configuration twice), the seed spread
    at k, and the spread between configurations at k (their standard deviation)."""
    final_metric = final_metric or metric
    length = min(len(c) for c in curves)
    one = one_per_config(curves)
    end = [c.final(final_metric) for c in one]
    pairs = seed_pairs(curves)
    rows = []
    for k in epochs or checkpoints(length):
        at = [c.at(metric, k) for c in one]
        rows.append(
            dict(
                epoch=k,
                frac=round(k / length, 4),
                n=len(one),
                spearman=round(spearman(at, end), 4),
                kendall=round(kendall(at, end), 4),
                between_sd=round(float(np.std(at, ddof=1)), 4) if len(at) > 1 else None,
                seed_spread=round(float(np.mean([abs(p.at(metric, k) - q.at(metric, k)) for p, q in pairs])), 4)
                if pairs
                else None,
                seed_pairs=len(pairs),
            )
        )
    return rows


REVERSAL_GAPS = (0.0, 0.005, 0.01, 0.02)  # how far behind (accuracy) a trial stood when it was judged


def reversal_table(
    curves: list[Curve], metric: str, final_metric: str | None = None, gaps: tuple[float, ...] = REVERSAL_GAPS
) -> list[dict]:
    """Per epoch k and gap g: of the ordered pairs of configurations where one stood more than g behind the
    other at k by `metric`, how many finished ahead by `final_metric`: how often cutting a trial that far
    behind at k would have dropped the better one."""
    final_metric = final_metric or metric
    one = one_per_config(curves)
    length = min(len(c) for c in one)
    rows = []
    for k in checkpoints(length):
        at = [c.at(metric, k) for c in one]
        end = [c.final(final_metric) for c in one]
        for g in gaps:
            behind = [(i, j) for i in range(len(one)) for j in range(len(one)) if at[i] < at[j] - g]
            rows.append(
                dict(
                    epoch=k,
                    frac=round(k / length, 4),
                    gap=g,
                    pairs=len(behind),
                    reversed=sum(end[i] > end[j] for i, j in behind),
                )
            )
    return rows


def lever_pairs(curves: list[Curve]) -> list[tuple[str, Curve, Curve]]:
    """(lever, base, other): each seed-0 curve against its config file's base curve (the one whose variant sets
    nothing but the seed); the lever is what the other's variant sets (several settings that move together,
    like the release's KD triple, count as one lever named by their keys)."""
    seed0 = [c for c in curves if c.seed == 0]
    bases = {c.config: c for c in seed0 if not c.variant}
    return [("+".join(sorted(c.variant)), bases[c.config], c) for c in seed0 if c.variant and c.config in bases]


def decided_at(a: Curve, b: Curve, metric: str, final_metric: str | None = None) -> int:
    """The first epoch k from which, at every epoch k..end, the better of a and b by `metric` is the one
    better at the end by `final_metric`; the length (only the end decides) where none."""
    final_metric = final_metric or metric
    length = min(len(a), len(b))
    sign = np.sign(a.final(final_metric) - b.final(final_metric))
    k = length
    for e in range(length, 0, -1):
        if np.sign(a.at(metric, e) - b.at(metric, e)) != sign:
            break
        k = e
    return k


def judge_fraction(table: list[dict], min_rho: float = DEFAULT_MIN_RHO) -> float | None:
    """The earliest fraction of the schedule from which Spearman's rho stays >= min_rho; None if never (an
    analysis, not the rung rule: that is the regret rule, orchestrator/sweep/regret.py)."""
    ok = None
    for row in reversed(table):
        if row["spearman"] != row["spearman"] or row["spearman"] < min_rho:
            break
        ok = row["frac"]
    return ok
