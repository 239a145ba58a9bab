"""Searchers compared by replaying recorded learning curves: no training, Ray Tune's own scheduler and
searcher objects making the decisions.

The table is the curves of experiments/search_fidelity (every configuration trained to its end, val every
epoch). A replayed search asks its searcher for a configuration, "trains" it by reading its curve (one of
its seeds at random, so seed noise is part of the replay), reports each epoch to its scheduler (Tune's
ASHAScheduler, called as Tune calls it) and stops a trial where the scheduler says STOP. Budgets are in
trial-epochs (the students here differ in cost per epoch: s121 ~1.4x, resdw ~5x the d111; the replay counts
epochs): trials start until the budget is spent and the running ones end, so a search spends a little more
than its budget (`spent` says how much). The pick is what kdsweep would export: the best trial by its last
validation among those that ran to the end (ASHA always lets some run to the end); its worth is its
configuration's *mean final* validation over seeds (not the noisy value the search saw), against the best
configuration's.

Searchers: random (uniform over the table) and Optuna's TPE (Ray Tune's OptunaSearch); schedulers: none,
ASHA (one bracket; grace period and reduction factor swept), ASHA with 3 brackets (Tune's asynchronous
Hyperband) and, with --held-out, ASHA at the regret rule's rungs fitted on the other half of the
configurations (asha-rule). Each arm's regret comes with the 90% interval of its mean over the repeats
(bootstrap) and its 90th percentile. PBT/PB2 change a trial's settings mid-run, so no recorded curve
replays them; BOHB needs hpbandster (not installed): both are left out, said in the output.

    .venv/bin/python bench/search_replay.py --curves experiments/search_fidelity/curves \
        --out experiments/search_fidelity/replay.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.curves import Curve, load_curves  # noqa: E402
from bench.regret import fit_rule  # noqa: E402
from orchestrator.machine import machine  # noqa: E402
from orchestrator.rungs import grace_epochs  # noqa: E402


class _Trial:  # what Tune's schedulers read of a trial: its id
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def groups(curves: list[Curve]) -> list[list[Curve]]:
    """The table's configurations, each a list of its seeds' curves."""
    by: dict[tuple, list[Curve]] = {}
    for c in curves:
        by.setdefault(c.key, []).append(c)
    return list(by.values())


def make_searcher(kind: str, n: int, rng: np.random.Generator, seed: int):
    """suggest() -> configuration index; complete(index, value): the searcher's two calls."""
    if kind == "random":
        return lambda: int(rng.integers(n)), lambda i, v: None
    if kind == "optuna":
        import optuna
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = OptunaSearch.convert_search_space({"config": tune.choice(list(range(n)))})
        s = OptunaSearch(space=space, metric="val_acc", mode="max", sampler=optuna.samplers.TPESampler(seed=seed))
        ids = iter(range(10**9))
        pending: dict[int, list[str]] = {}

        def suggest():
            tid = f"t{next(ids)}"
            i = int(s.suggest(tid)["config"])
            pending.setdefault(i, []).append(tid)
            return i, tid

        def complete(tid, value):
            s.on_trial_complete(tid, {"val_acc": value})

        return suggest, complete
    raise ValueError(kind)


def make_scheduler(kind: str, max_t: int, grace: int, rf: int, metric: str):
    if kind == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="epoch",
        metric=metric,
        mode="max",
        max_t=max_t,
        grace_period=grace,
        reduction_factor=rf,
        brackets=3 if kind == "hyperband" else 1,  # asha-rule: one bracket at the regret rule's rungs
    )


def replay(
    table: list[list[Curve]],
    searcher: str,
    scheduler: str,
    budget: int,
    workers: int,
    max_t: int,
    grace: int,
    rf: int,
    metric: str,
    seed: int,
) -> dict:
    """One search: trials start, `workers` at a time, until `budget` trial-epochs are spent, and the ones running
    then go on to their end or their cut (what a search with a launch budget does); the pick and the cost."""
    from ray.tune.schedulers import TrialScheduler

    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # ASHA's bracket draw uses numpy's global generator
    suggest, complete = make_searcher(searcher, len(table), rng, seed)
    sched = make_scheduler(scheduler, max_t, grace, rf, metric)
    running, done, spent, n = [], [], 0, 0
    while running or spent < budget:
        while spent < budget and len(running) < workers:  # no trial starts once the budget is spent
            got = suggest()
            i, tid = got if isinstance(got, tuple) else (got, f"t{n}")
            n += 1
            curve = table[i][int(rng.integers(len(table[i])))]
            if sched is not None:
                sched.on_trial_add(None, _Trial(tid))
            running.append(dict(tid=tid, i=i, curve=curve, epoch=0, last=None))
        for t in list(running):
            t["epoch"] += 1
            spent += 1
            t["last"] = t["curve"].at(metric, t["epoch"])
            result = {"epoch": t["epoch"], metric: t["last"]}
            stop = t["epoch"] >= max_t
            if sched is not None and not stop:
                stop = sched.on_trial_result(None, _Trial(t["tid"]), result) == TrialScheduler.STOP
            if stop:
                if sched is not None:
                    sched.on_trial_complete(None, _Trial(t["tid"]), result)
                complete(t["tid"], t["last"])
                running.remove(t)
                done.append(t)
    ended = [t for t in done if t["epoch"] >= max_t]
    pick = max(ended, key=lambda t: t["last"])
    return dict(pick=pick["i"], trials=n, full=len(ended), stopped=len(done) - len(ended), spent=spent)


def worth(table: list[list[Curve]], metric: str) -> list[float]:
    """Each configuration's mean final validation over its seeds."""
    return [float(np.mean([c.final(metric) for c in g])) for g in table]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curves", default="experiments/search_fidelity/curves")
    ap.add_argument("--length", type=int, default=40, help="curves recorded to this many epochs")
    ap.add_argument("--metric", default="val_acc", help="what the scheduler judges and the pick is worth by")
    ap.add_argument("--budgets", type=int, nargs="+", default=[80, 160, 320], help="trial-epochs")
    ap.add_argument("--workers", type=int, default=2, help="trials at a time")
    ap.add_argument("--graces", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    ap.add_argument("--rfs", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--n-val", type=int, default=5000, help="validation images the curves were measured on")
    ap.add_argument(
        "--held-out",
        type=int,
        default=None,
        metavar="SEED",
        help="split the configurations in two by SEED: fit the regret rule on one half and replay every arm, "
        "the rule's included, on the other (the check that the rule holds on curves it was not fitted to)",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    table = groups(load_curves(ROOT / a.curves, a.length))
    if len(table) < 3:
        sys.exit(f"{a.curves}: {len(table)} configurations recorded to {a.length} epochs; the replay needs >= 3")
    t0 = time.time()
    rule = None
    if a.held_out is not None:  # the rule from one half of the configurations, every arm on the other
        perm = np.random.default_rng(a.held_out).permutation(len(table))
        fit, table = [table[i] for i in perm[: len(table) // 2]], [table[i] for i in perm[len(table) // 2 :]]
        acc = np.array([[e[a.metric] for e in c.epochs] for g in fit for c in g])
        rule = fit_rule(acc, a.n_val)
        rule = dict(
            grace=grace_epochs(a.length, rule["grace_frac"]),
            rf=rule["reduction_factor"],
            fitted_on=[g[0].name for g in fit],
            **{k: rule[k] for k in ("grace_frac", "regret_mean", "bound", "cost_frac")},
        )
    w = worth(table, a.metric)
    best = max(w)
    rows = []
    arms = [("random", "none", a.length, 2)] + [("optuna", "none", a.length, 2)]
    if rule:
        arms += [(s, "asha-rule", rule["grace"], rule["rf"]) for s in ("random", "optuna")]
    arms += [
        (s, k, g, rf)
        for s in ("random", "optuna")
        for k in ("asha", "hyperband")
        for g in a.graces
        for rf in a.rfs
        if g < a.length and not (k == "hyperband" and rf != a.rfs[0])
    ]
    for budget in a.budgets:
        for searcher, sched, grace, rf in arms:
            picks = [
                replay(table, searcher, sched, budget, a.workers, a.length, grace, rf, a.metric, seed)
                for seed in range(a.repeats)
            ]
            got = [w[p["pick"]] for p in picks]
            regrets = best - np.array(got)
            boot = np.random.default_rng(0).choice(regrets, (1000, len(regrets))).mean(1)  # the mean's spread
            rows.append(
                dict(
                    budget=budget,
                    searcher=searcher,
                    scheduler=sched,
                    grace=grace if sched != "none" else None,
                    rf=rf if sched != "none" else None,
                    mean_pick=round(float(np.mean(got)), 5),
                    regret=round(best - float(np.mean(got)), 5),
                    regret_ci90=[round(float(v), 5) for v in np.percentile(boot, [5, 95])],
                    regret_p90=round(float(np.percentile(regrets, 90)), 5),
                    p_best=round(float(np.mean([g == best for g in got])), 3),
                    trials=round(float(np.mean([p["trials"] for p in picks])), 1),
                    full=round(float(np.mean([p["full"] for p in picks])), 2),
                    spent=round(float(np.mean([p["spent"] for p in picks])), 1),
                )
            )
            r = rows[-1]
            print(
                f"budget {budget:4d} {searcher:6s} {sched:9s} grace {str(r['grace']):4s} rf {str(r['rf']):4s} "
                f"pick {r['mean_pick']:.4f} regret {r['regret']:.4f} [{r['regret_ci90'][0]:.4f}, "
                f"{r['regret_ci90'][1]:.4f}] P(best) {r['p_best']:.2f} "
                f"trials {r['trials']:.1f} full {r['full']:.1f} spent {r['spent']:.0f}",
                flush=True,
            )
    out = dict(
        curves=a.curves,
        metric=a.metric,
        length=a.length,
        workers=a.workers,
        repeats=a.repeats,
        configurations=[
            dict(variants=[c.variant for c in g], config=g[0].config, worth=round(v, 5)) for g, v in zip(table, w)
        ],
        best=round(best, 5),
        held_out=dict(seed=a.held_out, rule=rule) if rule else None,
        rows=rows,
        left_out="PBT/PB2 (change settings mid-run: not replayable from fixed curves); BOHB (hpbandster not installed)",
        wall_s=round(time.time() - t0, 1),
        machine=machine(),
        date=time.strftime("%Y-%m-%d"),
    )
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
