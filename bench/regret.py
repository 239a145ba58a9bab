"""ASHA's rungs set by what a cut costs the winner (regret), estimated from recorded learning curves.

A rung is judged by whether the candidate that would have won still finishes, not by how well early ranks
order candidates that noise cannot tell apart (ASHA, Li et al. 2020; Hyperband). From curves recorded to
their end (`val_acc` each epoch, bench/curves.py reads them), for each (first rung as a
fraction of the schedule, reduction factor):

- regret: the best final validation accuracy among all candidates minus the best among those ASHA let
  finish; cost: the trial-epochs trained, as a fraction of training every candidate to its end;
- both estimated by resampling: many draws of a subset of the candidates in a random arrival order, each
  replayed through Tune's asynchronous rule (a trial reaching a rung is stopped when its accuracy is below
  the (1 - 1/rf) quantile of those recorded there before it; AsyncHyperBandScheduler's cutoff);
- the rule: the cheapest setting whose mean regret stays within `regret_frac` of one standard error of a
  validation accuracy (sqrt(p (1 - p) / n_val)), and whose regret on curves held out of the fit (random
  halves) is reported beside it.

Where late bloomers are planted it takes a later rung or a milder cut; where the order is set early, an
earlier one (tests/test_regret.py). The rule it fits is applied by orchestrator/rungs.py. Pure numpy: no Ray.
"""

from __future__ import annotations

import math

import numpy as np

from orchestrator.rungs import AsyncRungs, grace_epochs

GRACE_FRACS = (0.05, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.375, 0.5, 0.625, 0.75, 1.0)
FACTORS = (2, 3, 4)
REGRET_FRAC = 0.5  # the winner's expected loss a rule may cost, in standard errors of one validation accuracy
SUBSET = 0.75  # each resample draws this share of the candidates (at least 3), without replacement


def val_se(acc: float, n_val: int) -> float:
    """The standard error of one accuracy `acc` measured on `n_val` images (binomial)."""
    return math.sqrt(acc * (1 - acc) / n_val)


def replay(acc: np.ndarray, order, grace: int, rf: int) -> tuple[float, int]:
    """(regret, trial-epochs) of ASHA (AsyncRungs) over the curves acc[(n, T)] arriving in `order`, one at
    a time: regret is the best final value of all minus the best of those let finish."""
    n, length = acc.shape
    rungs = AsyncRungs(length, grace, rf)
    cost, finished = 0, []
    for i in order:
        stop = next((e for e in range(1, length + 1) if not rungs.judge(i, e, float(acc[i, e - 1]))), length)
        cost += stop
        if stop == length:
            finished.append(i)
    best = float(acc[list(order), -1].max())
    return best - float(acc[finished, -1].max()), cost


def regret_table(
    acc: np.ndarray,
    draws: int = 300,
    seed: int = 0,
    fracs=GRACE_FRACS,
    factors=FACTORS,
    subset: float = SUBSET,
) -> list[dict]:
    """Per (grace fraction, reduction factor): mean and 90th percentile of the regret, and the mean cost as a
    fraction of training every candidate to its end, over `draws` resamples of the curves acc[(n, T)]."""
    n, length = acc.shape
    k = max(3, min(n, round(subset * n)))
    rng = np.random.default_rng(seed)
    samples = [rng.permutation(n)[:k] for _ in range(draws)]  # a subset, in a random arrival order
    rows = []
    for f in fracs:
        g = grace_epochs(length, f)
        for rf in factors if g < length else factors[:1]:  # no rung: the factor changes nothing
            out = np.array([replay(acc, s, g, rf) for s in samples])  # (draws, 2)
            rows.append(
                dict(
                    grace_frac=f,
                    grace=g,
                    reduction_factor=rf,
                    regret_mean=round(float(out[:, 0].mean()), 5),
                    regret_p90=round(float(np.percentile(out[:, 0], 90)), 5),
                    cost_frac=round(float(out[:, 1].mean()) / (k * length), 4),
                )
            )
    return rows


def choose(table: list[dict], bound: float) -> dict:
    """The cheapest row whose mean regret is within `bound` there and at every later first rung with the same
    factor (one noisy early reading that happens to pass is not a rule: the choice must stay within the
    bound once past its rung, as a fit to noise would not; ties: the later rung, then the milder factor).
    Training every candidate to its end (regret 0) is always a row, so something is always chosen."""
    ok = []
    for rf in sorted({r["reduction_factor"] for r in table}):
        rows = sorted(
            (r for r in table if r["reduction_factor"] == rf and r["grace_frac"] < 1), key=lambda r: r["grace_frac"]
        )
        for i, r in enumerate(rows):
            if all(later["regret_mean"] <= bound for later in rows[i:]):
                ok.append(r)
                break
    ok += [r for r in table if r["grace_frac"] >= 1.0]
    return min(ok, key=lambda r: (r["cost_frac"], -r["grace_frac"], r["reduction_factor"]))


def held_out(acc: np.ndarray, bound: float, splits: int = 20, draws: int = 100, seed: int = 0) -> dict:
    """The rule fitted on half the curves and replayed on the other half, over random halves: its held-out
    mean regret (and the share of halves within `bound`), and its held-out cost."""
    n = len(acc)
    rng = np.random.default_rng(seed)
    regrets, costs, within = [], [], 0
    for s in range(splits):
        perm = rng.permutation(n)
        fit, test = perm[: n // 2], perm[n // 2 :]
        rule = choose(regret_table(acc[fit], draws, seed + s), bound)
        row = next(
            r
            for r in regret_table(
                acc[test], draws, seed + s, fracs=(rule["grace_frac"],), factors=(rule["reduction_factor"],)
            )
        )
        regrets.append(row["regret_mean"])
        costs.append(row["cost_frac"])
        within += row["regret_mean"] <= bound
    return dict(
        splits=splits,
        regret_mean=round(float(np.mean(regrets)), 5),
        regret_p90=round(float(np.percentile(regrets, 90)), 5),
        cost_frac=round(float(np.mean(costs)), 4),
        within_bound=round(within / splits, 3),
    )


def fit_rule(
    acc: np.ndarray, n_val: int, regret_frac: float = REGRET_FRAC, draws: int = 300, seed: int = 0, splits: int = 20
) -> dict:
    """The rule for curves acc[(n, T)] measured on `n_val` validation images: the chosen row, the bound it
    meets, the whole table, and its check on held-out halves."""
    se = val_se(float(np.median(acc[:, -1])), n_val)
    bound = regret_frac * se
    table = regret_table(acc, draws, seed)
    rule = choose(table, bound)
    return dict(
        grace_frac=rule["grace_frac"],
        reduction_factor=rule["reduction_factor"],
        regret_mean=rule["regret_mean"],
        regret_p90=rule["regret_p90"],
        cost_frac=rule["cost_frac"],
        bound=round(bound, 5),
        regret_frac=regret_frac,
        val_se=round(se, 5),
        n=len(acc),
        length=acc.shape[1],
        held_out=held_out(acc, bound, splits, max(10, draws // 3), seed) if len(acc) >= 6 else None,
        table=table,
    )
