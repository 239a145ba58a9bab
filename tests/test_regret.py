"""ASHA's rungs by regret, what a cut costs the winner, on curves: bench/regret.py fits the rule,
orchestrator/rungs.py applies it."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from bench.regret import choose, fit_rule, regret_table, replay
from orchestrator import rungs
from orchestrator.rungs import AsyncRungs, milestones

T = 40


def _early_order(n=16, seed=0):
    """Curves whose order is set from the start: each rises to its own level, the gaps wider than the noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, T + 1)
    levels = np.linspace(0.90, 0.95, n)
    return levels[:, None] * (1 - np.exp(-t / 4))[None, :] + rng.normal(0, 0.0005, (n, T))


def _late_bloomers(n=16, bloomers=4, seed=0):
    """Most curves plateau early at 0.93; `bloomers` trail everyone until 70% of the schedule, then pass
    them all to finish near 0.95 (a shape that learns slowly and ends best)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, T + 1)
    fast = 0.93 * (1 - np.exp(-t / 3))
    slow = np.where(t < 0.7 * T, 0.85 * (1 - np.exp(-t / 3)), 0.85 + (t - 0.7 * T) / (0.3 * T) * 0.10)
    acc = np.array([slow if i < bloomers else fast for i in range(n)])
    return acc + rng.normal(0, 0.0005, (n, T))


def test_late_bloomers_push_the_first_rung_later():
    """Where late bloomers are planted the rule takes a later rung (or no cut), where the order is set early
    an earlier one; each meets its bound."""
    early = fit_rule(_early_order(), 5000, draws=30, splits=4)
    late = fit_rule(_late_bloomers(), 5000, draws=30, splits=4)
    assert early["grace_frac"] <= 0.15 and early["cost_frac"] < 0.5
    assert late["grace_frac"] >= 0.75 and late["grace_frac"] > early["grace_frac"]
    for rule in (early, late):
        assert rule["regret_mean"] <= rule["bound"] == pytest.approx(0.5 * rule["val_se"], abs=1e-5)
    assert early["held_out"]["splits"] == 4 and early["held_out"]["regret_mean"] <= early["bound"]


def test_replay_by_hand():
    """Three curves of two epochs, first rung 1, keep 1/2: arriving best-early-first, the late winner (0.9) is
    cut at epoch 1 and the regret is 0.2; arriving in the other order, nobody is cut."""
    acc = np.array([[0.5, 0.9], [0.6, 0.8], [0.7, 0.7]])
    assert replay(acc, [0, 1, 2], 1, 2) == (0.0, 6)
    regret, cost = replay(acc, [2, 1, 0], 1, 2)
    assert regret == pytest.approx(0.2) and cost == 4  # 0.6 < median(0.7); 0.5 < median(0.7, 0.6)


def test_async_rungs_decide_as_tunes_asha():
    """AsyncRungs (the replay's rule and the ledger scheduler's) stops exactly the trials Tune's own
    AsyncHyperBand bracket stops, on random curves reported in a random interleaving."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = np.random.default_rng(1)
    max_t, grace, rf = 20, 2, 3
    assert [m for m, _ in reversed(_Bracket(grace, max_t, rf, 0)._rungs)] == milestones(max_t, grace, rf)
    for _ in range(5):
        acc = rng.uniform(0.5, 0.95, (30, max_t))
        ours, tunes = AsyncRungs(max_t, grace, rf), _Bracket(grace, max_t, rf, 0)
        epoch, alive = dict.fromkeys(range(30), 0), set(range(30))
        while alive:
            i = int(rng.choice(sorted(alive)))
            epoch[i] += 1
            e, v = epoch[i], float(acc[i, epoch[i] - 1])
            go_on = ours.judge(i, e, v)
            assert go_on == (tunes.on_result(SimpleNamespace(trial_id=i), e, v) == "CONTINUE")
            if not go_on or e == max_t:
                alive.discard(i)


def test_seeded_rungs_cut_as_one_run_would():
    """A search in two chunks, the second's rungs seeded with the first's curves, stops the same trials as
    one run over all of them."""
    acc = _early_order(12, seed=3)[np.random.default_rng(3).permutation(12)]  # arriving in no order
    one = AsyncRungs(T, 4, 2)
    whole = [next((e for e in range(1, T + 1) if not one.judge(i, e, acc[i, e - 1])), T) for i in range(12)]
    first = AsyncRungs(T, 4, 2)
    stops = [next((e for e in range(1, T + 1) if not first.judge(i, e, acc[i, e - 1])), T) for i in range(6)]
    second = AsyncRungs(T, 4, 2)
    for i in range(6):  # what the ledger holds of the first chunk
        second.record(i, acc[i, : stops[i]])
    stops += [next((e for e in range(1, T + 1) if not second.judge(i, e, acc[i, e - 1])), T) for i in range(6, 12)]
    assert stops == whole and min(whole) < T  # the same cuts, and some were cut


def test_a_rule_must_stay_within_the_bound_after_its_rung():
    """An early rung that passes by luck, with a later one over the bound, is not a rule: the choice is the
    first rung from which every later one (same factor) passes."""
    rows = [
        dict(grace_frac=0.1, grace=4, reduction_factor=2, regret_mean=0.001, cost_frac=0.3),
        dict(grace_frac=0.2, grace=8, reduction_factor=2, regret_mean=0.004, cost_frac=0.4),
        dict(grace_frac=0.5, grace=20, reduction_factor=2, regret_mean=0.0005, cost_frac=0.7),
        dict(grace_frac=1.0, grace=40, reduction_factor=2, regret_mean=0.0, cost_frac=1.0),
    ]
    assert choose(rows, 0.002)["grace_frac"] == 0.5
    assert choose(rows, 0.0001)["grace_frac"] == 1.0  # nothing passes: every candidate to its end
    assert regret_table(_early_order(4), draws=5, fracs=(1.0,))[0]["regret_mean"] == 0.0


def test_the_recorded_rule_is_its_table_s_choice_and_auto_reads_it():
    rec = json.loads(open("experiments/search_regret/rule_search_fidelity.json").read())
    rule = rungs.read_rule()
    chosen = choose(rec["table"], rec["bound"])
    assert (chosen["grace_frac"], chosen["reduction_factor"]) == (rule["grace_frac"], rule["reduction_factor"])
    g, rf, why = rungs.auto_rungs(40)
    assert g == max(1, round(rule["grace_frac"] * 40)) and rf == rule["reduction_factor"]
    assert "expected cost to the winner" in why and "held-out" in why
