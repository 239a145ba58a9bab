"""The run's plan: stage estimates from measured speeds, the whole-run budget the final stage gets."""

import pytest

from orchestrator.config import SweepConfig, from_dict
from orchestrator.sweep import final_budget
from orchestrator.sweep import rates as rates_mod
from orchestrator.sweep.final_budget import EXPORT_S, FINAL_START_S, final_slots, finalist_epoch_s
from orchestrator.sweep.final_budget import final_stage_minutes as _final_minutes
from orchestrator.sweep.plan import (
    check_finalists,
    grow_candidates,
    grow_config,
    make_plan,
    search_statement,
    skip_check,
)
from orchestrator.sweep.rates import student_epoch_seconds


def _cfg(**over) -> SweepConfig:
    raw = dict(
        name="p",
        train=dict(student="res3_w16_d111", epochs=4),
        trials=[{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}, {"loss": "ce"}],
        sweep=dict(grace_period=2, reduction_factor=2, max_concurrent_trials=2),
        final=dict(epochs=40, top=2, seeds=1),
    )
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return from_dict(SweepConfig, raw)


def test_plan_adds_the_stages_from_measured_rates():
    cfg = _cfg()
    p = make_plan(cfg, {"res3_w16_d111": 30.0}, cache_forwards=55_000, teacher_rate=500.0, slots=2)
    assert p.cache_s == pytest.approx(110.0)
    assert p.search_trial_epochs == 4 * (2 + 2 / 2)  # all to the grace period, half to the end
    assert p.search_s == pytest.approx(12 * 30 / 2)  # two at a time
    assert p.final_epochs == 40 and p.final_s == pytest.approx(40 * 30)  # two finalists side by side
    assert p.total_s == pytest.approx(110 + 180 + 1200 + EXPORT_S)
    line = p.line(budget_min=10)
    assert line.startswith("plan: ~25.2 min on this CPU: cache 1.8, search 3.0") and "OVER the 10-minute" in line
    assert "OVER" not in p.line(budget_min=30)
    budgeted = make_plan(_cfg(final=dict(minutes=10)), {"res3_w16_d111": 30.0}, 0, 500.0, slots=2)
    assert budgeted.final_epochs == 20 and budgeted.cache_s == 0  # 10 min at 30 s an epoch; cache hit
    assert "(20 epochs of a cap of 40)" in budgeted.line()
    # a whole-run budget: the final stage gets what the cache and the search will have left of it
    run = make_plan(_cfg(minutes=20), {"res3_w16_d111": 30.0}, 55_000, 500.0, slots=2, elapsed_s=60)
    left = 20 * 60 - 60 - 110 - 180 - EXPORT_S - FINAL_START_S  # 822 s: 27 epochs of 30 s
    assert run.final_epochs == int(left // 30) and run.total_s <= 20 * 60 - 60
    assert "OVER" not in run.line(budget_min=20)
    # an ensemble's members: their caches' seconds count, and the final stage gets that much less
    ens = make_plan(_cfg(minutes=20), {"res3_w16_d111": 30.0}, 55_000, 500.0, slots=2, elapsed_s=60, members_s=90)
    assert ens.cache_s == pytest.approx(110 + 90) and ens.final_epochs == int((left - 90) // 30)


def test_a_faster_final_stage_and_its_floor():
    """final.cpus_per_trial: the finalist's epoch at its measured speed-up, one at a time; final.min_epochs:
    a budget too small for what the result needs keeps the floor and says that this run takes longer."""
    cfg = _cfg(final=dict(top=1, cpus_per_trial=2, min_epochs=16, minutes=6))
    assert final_slots(cfg, cpus=2, search_slots=2) == 1 and final_slots(_cfg(), 2, 2) == 2
    p = make_plan(cfg, {"res3_w16_d111": 30.0}, 0, 500.0, slots=2, final_speedup=1.5, final_slots=1)
    assert p.final_epochs == 18 and p.final_s == pytest.approx(18 * 20)  # 360 s at 30 / 1.5 s an epoch
    tight = make_plan(
        _cfg(final=dict(top=1, cpus_per_trial=2, min_epochs=16, minutes=2)),
        {"res3_w16_d111": 30.0},
        0,
        500.0,
        slots=2,
        final_speedup=1.5,
        final_slots=1,
    )
    assert tight.final_epochs == 16  # 6 would fit; the floor holds
    assert "keeps the 16 epochs the result needs" in tight.line(budget_min=3)
    with pytest.raises(ValueError, match="min_epochs must be in 1..final.epochs"):
        _cfg(final=dict(min_epochs=41))


def test_the_whole_run_budget_leaves_the_final_stage_the_rest():
    assert _final_minutes(_cfg(), 0) == 0  # no budget at all
    assert _final_minutes(_cfg(final=dict(minutes=30)), 600) == 30  # a stage budget alone
    run = _cfg(minutes=10)
    assert _final_minutes(run, 120) == pytest.approx(10 - 2 - (EXPORT_S + FINAL_START_S) / 60)
    assert _final_minutes(_cfg(minutes=10, final=dict(minutes=5)), 120) == 5  # the tighter of the two
    assert 0 < _final_minutes(run, 3600) < 0.01  # spent: one epoch, not none
    with pytest.raises(ValueError, match="minutes must be >= 0"):
        _cfg(minutes=-1)


def test_a_check_the_budget_cannot_spare_is_skipped():
    """The default's shape: KD and its control side by side, the control a reference row only, one finalist.
    The search cannot change what the final stage trains, so where it would cost final epochs it is skipped
    (the plan is the run without it); where the budget holds both, or the search chooses, it runs."""
    check = dict(
        trials=[{"loss": "kd", "alpha": 0.5}, {"loss": "ce"}],
        final=dict(epochs=40, top=1, control="reference", min_epochs=14),
        minutes=10,
    )
    cfg = _cfg(**check)
    assert [(f["loss"], f["alpha"]) for f in check_finalists(cfg)] == [("kd", 0.5)]
    rate, args = {"res3_w16_d111": 30.0}, dict(cache_forwards=55_000, teacher_rate=700.0, slots=2)
    with_search, without = make_plan(cfg, rate, **args), make_plan(cfg, rate, **args, search=False)
    assert without.search_s == 0 and without.search_trial_epochs == 0
    # the check (2 trials x 3 epochs at 30 s) leaves 13 final epochs, under the floor of 14: at the floor,
    # over the budget; without it 16 fit
    assert (with_search.final_epochs, without.final_epochs) == (14, 16)
    why = skip_check(cfg, with_search, without)
    assert "cannot change the finalist" in why and "the final stage trains 16 epochs (with the check: 14)" in why
    roomy = _cfg(**{**check, "minutes": 60})  # the final stage above its floor with the check: it runs
    assert skip_check(roomy, make_plan(roomy, rate, **args), make_plan(roomy, rate, **args, search=False)) == ""
    assert skip_check(_cfg(**{**check, "minutes": 0}), with_search, without) == ""  # no budget: no skipping
    # a search that chooses runs whatever it costs: two KD trials, a finalist control, a search space
    assert check_finalists(_cfg(**{**check, "trials": [{"lr": 0.1}, {"lr": 0.2}, {"loss": "ce"}]})) == []
    assert check_finalists(_cfg(**{**check, "final": {**check["final"], "control": "finalist"}})) == []
    assert check_finalists(_cfg(**check, search_space={"lr": {"choice": [0.1, 0.2]}})) == []
    assert check_finalists(from_dict(SweepConfig, {"name": "d", "final": {"epochs": 0}})) == []


def test_a_budget_with_room_grows_the_search_and_says_how_many_candidates(rung_rule):
    """grow: the candidates the budget affords beside the final stage at its cap, `slots` at a time at the
    slowest epoch measured, each at the epochs the regret rule's rungs leave it on average; fewer than
    min_candidates is no search (said, with the count); at most max_candidates; the grown config draws them
    from grow.search_space in place of the config's trials, its rungs the rule's."""
    rung_rule(1.0)  # a rule that cuts nothing: every candidate to its end
    grow = dict(search_space={"lr": {"loguniform": [0.05, 0.2]}}, epochs=10, min_candidates=4, max_candidates=9)
    cfg = _cfg(minutes=60, grow=grow)
    rate = {"res3_w16_d111": 30.0}  # a candidate: 10 epochs x 30 s = 5 min
    n, why = grow_candidates(cfg, rate, slots=2, fixed_s=40 * 60)  # 20 min left: 4 waves of 2, 8 candidates
    assert n == 8 and "leaves ~20 min beside the final stage at its 40 epochs" in why
    assert "room for 8 candidate(s) of 10 epochs (~5.0 min each here, 2 at a time)" in why and "grows to 8" in why
    assert grow_candidates(cfg, rate, slots=4, fixed_s=40 * 60)[0] == 9  # more CPUs: capped at max_candidates
    n, why = grow_candidates(cfg, rate, slots=2, fixed_s=51 * 60)  # 9 min left: one wave of 2
    assert n == 0 and "room for 2 candidate(s)" in why and "at least grow.min_candidates (4): not grown" in why
    assert grow_candidates(_cfg(minutes=60), rate, 2, 0) == (0, "")  # no grow space: nothing to say
    grown = grow_config(cfg, 8)
    assert grown.trials == [] and grown.search_space == grow["search_space"] and grown.train.epochs == 10
    assert grown.sweep.num_samples == 8 and grown.sweep.grace_period == grown.sweep.reduction_factor == "auto"
    said = search_statement(grown)
    assert said["searches"] and said["trials"] == 8 and "random draws" in said["statement"]
    p = make_plan(grown, rate, cache_forwards=0, teacher_rate=0.0, slots=2, elapsed_s=40)
    assert p.search_trial_epochs == 80 and p.final_epochs == 40  # the final stage keeps its cap
    rung_rule(0.2, rf=2)  # rungs at 2, 4, 8 of 10: a candidate costs 2 + 2/2 + 4/4 + 2/8 = 4.25 epochs on average
    n, why = grow_candidates(cfg, rate, slots=2, fixed_s=50 * 60)  # 10 min: 4 waves of 2.1 min, 2 at a time
    assert n == 8 and "(4.2 epochs each on average under ASHA's rungs, ~2.1 min each here, 2 at a time)" in why
    assert make_plan(grow_config(cfg, 8), rate, 0, 0.0, 2, 40).search_trial_epochs == 8 * 4.25


def test_student_rates_are_measured_here():
    sec = student_epoch_seconds(_cfg(), n_train=1000, n_val=300, threads=1)
    assert set(sec) == {"res3_w16_d111"} and 0 < sec["res3_w16_d111"] < 60


def test_the_layout_is_the_faster_of_two_timed_here(monkeypatch):
    """train.layout auto: each student's step is timed in both layouts, in turn, and the run takes the one
    whose steps cost least in all; the epoch estimate is the chosen layout's, from the same timings."""

    calls = []

    def fake_speed(name, layout="channels_last", **k):
        calls.append(layout)
        return {"channels_last": 900.0, "contiguous": 1200.0}[layout] * (2 if name == "res3_w16_d111" else 1)

    monkeypatch.setattr(rates_mod, "train_speed", fake_speed)
    cfg = _cfg(trials=[{"student": "res3_w16_d111"}, {"student": "res3_w12_d222"}])
    rates = rates_mod.student_rates(cfg, 1, ("channels_last", "contiguous"))
    assert calls[:2] == ["channels_last", "contiguous"] and len(calls) == 12  # in turn, 3 each, 2 students
    assert rates["contiguous"] == {"res3_w12_d222": 1200.0, "res3_w16_d111": 2400.0}
    assert rates_mod.pick_layout(rates) == "contiguous"
    # the least time in all, not the most images/s of one student: a 11.0 ms an image of each, b 11.7
    assert rates_mod.pick_layout({"a": {"x": 100.0, "y": 1000.0}, "b": {"x": 150.0, "y": 200.0}}) == "a"
    sec = student_epoch_seconds(cfg, 1200, 0, 1, overhead=1.0, rates=rates["contiguous"])
    assert sec == {"res3_w12_d222": 1.0, "res3_w16_d111": 0.5} and len(calls) == 12  # no second timing


def test_a_final_trial_alone_is_timed_without_a_neighbours_overhead(monkeypatch):
    """The search's trials share the machine (SWEEP_OVERHEAD); one final trial on every core does not
    (ALONE_OVERHEAD): its speed-up is the thread gain times the overheads' ratio, not the thread gain alone."""
    monkeypatch.setattr(
        rates_mod, "train_speed", lambda name, threads=None, **k: 1000.0 * rates_mod.torch.get_num_threads()
    )
    cfg = _cfg(final=dict(top=1, cpus_per_trial=2))
    search = student_epoch_seconds(cfg, 1000, 300, threads=1)
    assert search["res3_w16_d111"] == pytest.approx(rates_mod.SWEEP_OVERHEAD * 1100 / 1000)
    shared = final_budget.final_speedup(cfg, 1000, 300, search)
    alone = final_budget.final_speedup(cfg, 1000, 300, search, alone=True)
    ratio = rates_mod.SWEEP_OVERHEAD / rates_mod.ALONE_OVERHEAD
    assert shared == pytest.approx(2.0) and alone == pytest.approx(2.0 * ratio)
    assert final_budget.final_speedup(_cfg(), 1000, 300, search, alone=True) == 1.0  # same threads: no probe


def test_the_final_stage_is_fitted_at_the_slower_of_search_and_plan():
    """A search that ran faster than the plan's overhead assumed is divided by the plan's speed-up all the
    same, so the stage is fitted at the slower of the two; no search: the plan's probe; no plan: the search."""
    plan = {"a": 36.0, "b": 30.0}
    assert finalist_epoch_s(["a", "b"], [34.4, 33.0], plan) == [36.0, 33.0]
    assert finalist_epoch_s(["a"], None, plan) == [36.0]
    assert finalist_epoch_s(["a"], [34.4], {}) == [34.4]
