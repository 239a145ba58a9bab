"""The search built on a measurement: rank fidelity of early epochs, the rungs it sets, the searcher option,
the plain statement of what a run's search is, and the replay that compares searchers on recorded curves."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.curves import (
    Curve,
    decided_at,
    fidelity_table,
    judge_fraction,
    kendall,
    lever_pairs,
    load_curves,
    reversal_table,
    spearman,
)
from orchestrator import rungs
from orchestrator.config import ConfigError, SweepConfig, from_dict, load_sweep_config
from orchestrator.rungs import auto_rungs, grace_epochs, milestones, reversal_rate
from orchestrator.sweep.plan import search_statement
from tests.conftest import ROOT, smoke_config


def test_rank_correlations_against_hand_computed_values():
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2 / (4*15)
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert kendall([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / (2 * 3) ** 0.5)  # tau-b: a's tie in the denominator
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660, abs=1e-4)  # average ranks 1.5, 1.5, 3
    assert spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)


def _curve(name: str, accs: list[float], seed: int = 0, **variant) -> Curve:
    v = {**variant, **({"seed": seed} if seed else {})}
    return Curve(name, v, "t.yaml", [{"epoch": e + 1, "val_acc": a} for e, a in enumerate(accs)])


def _table(n: int = 5) -> list[Curve]:
    """n configurations of 10 epochs whose order is noise until epoch 5 and final from there, and a second
    seed of the fifth, 0.002 off."""
    finals = [0.90 + 0.01 * i for i in range(n)]
    curves = []
    for i, f in enumerate(finals):
        early = [0.80 + 0.01 * ((3 * i + e) % 5) for e in range(4)]  # a shuffled order before epoch 5
        late = [f - 0.01 * (9 - e) for e in range(4, 10)]  # the final order from epoch 5 on
        curves.append(_curve(f"c{i}", early + late, **({"lr": 0.1 * (i + 1)} if i else {})))  # c0: the base
    curves.append(_curve("c4s1", [r["val_acc"] - 0.002 for r in curves[4].epochs], seed=1, lr=0.5))
    return curves


def test_reversals_count_pairs_that_swapped_by_the_end():
    """Three configurations, 4 epochs: at epoch 1 a leads b by 0.03 and c by 0.01, but c ends first; b and c
    never swap. A second seed of a is one configuration, not a fourth."""
    a, b, c = (
        _curve("a", [0.83, 0.85, 0.86, 0.87]),
        _curve("b", [0.80, 0.84, 0.85, 0.86], lr=0.2),
        _curve("c", [0.82, 0.86, 0.88, 0.90], lr=0.3),
    )
    rows = {
        (r["epoch"], r["gap"]): r
        for r in reversal_table([a, b, c, _curve("a1", [0.5] * 4, seed=1)], "val_acc", gaps=(0.0, 0.02))
    }
    assert set(rows) == {(1, 0.0), (1, 0.02), (2, 0.0), (2, 0.02), (4, 0.0), (4, 0.02)}
    assert (rows[1, 0.0]["pairs"], rows[1, 0.0]["reversed"]) == (3, 1)  # b<a, b<c, c<a: c then ends ahead of a
    assert (rows[1, 0.02]["pairs"], rows[1, 0.02]["reversed"]) == (1, 0)  # only b, 0.03 behind a
    assert (rows[4, 0.0]["pairs"], rows[4, 0.0]["reversed"]) == (3, 0)  # at the end nothing swaps
    table = list(rows.values())
    assert reversal_rate(table, 0.3, 0.01) == (1 / 3, 3)  # latest fraction <= 0.3 is epoch 1 (0.25), gap 0 row
    assert reversal_rate(table, 0.6, 0.05) == (0.0, 3)  # epoch 2 (0.5): no pair > 0.02 apart, so the gap-0 row
    assert reversal_rate(table, 0.1, 0.0) is None  # nothing recorded that early


def test_fidelity_table_judge_fraction_and_seed_spread():
    curves = _table()
    table = {r["epoch"]: r for r in fidelity_table(curves, "val_acc")}
    assert set(table) == {1, 2, 5, 10}
    assert table[10]["spearman"] == 1.0 and table[5]["spearman"] == 1.0 and table[1]["spearman"] < 0.8
    assert table[5]["n"] == 5 and table[5]["seed_pairs"] == 1  # a seed pair counts once
    assert table[5]["seed_spread"] == pytest.approx(0.002)
    assert judge_fraction(list(table.values()), 0.8) == 0.5
    assert judge_fraction([dict(frac=0.5, spearman=0.9), dict(frac=1.0, spearman=0.7)], 0.8) is None


def test_a_lever_is_decided_where_its_order_stops_changing():
    a = _curve("a", [0.5, 0.7, 0.6, 0.8, 0.9])
    b = _curve("b", [0.6, 0.6, 0.7, 0.7, 0.8], loss="ce")
    c = _curve("c", [0.6, 0.6, 0.7, 0.7, 0.8], lr=0.2, alpha=0.9)
    assert decided_at(a, b, "val_acc") == 4  # a leads from epoch 4 on, and at the end
    assert decided_at(b, a, "val_acc") == 4
    pairs = lever_pairs([a, b, c, _curve("a1", [0.5] * 5, seed=1)])  # each against the base, seed 0 only
    assert [(lever, x.name, y.name) for lever, x, y in pairs] == [("loss", "a", "b"), ("alpha+lr", "a", "c")]


def test_curves_load_from_the_collected_files(tmp_path):
    rows = [{"config": "r50.yaml", "trial": 0, "variant": {"lr": 0.2}, "machine": "m"}]
    rows += [{"epoch": e, "val_acc": 0.8 + e / 100, "val_acc_raw": 0.8} for e in (1, 2, 3)]
    (tmp_path / "r50_00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r50_01.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))  # still running
    (c,) = load_curves(tmp_path, length=3)
    assert c.variant == {"lr": 0.2} and c.final("val_acc") == pytest.approx(0.83) and c.at("val_acc_raw", 2) == 0.8


def test_rungs_are_tunes_asha_milestones():
    from ray.tune.schedulers import ASHAScheduler

    for max_t, grace, rf in [(40, 10, 2), (90, 23, 3), (30, 5, 3), (2, 2, 2)]:
        asha = ASHAScheduler(
            time_attr="epoch", metric="val_acc", mode="max", max_t=max_t, grace_period=grace, reduction_factor=rf
        )
        # Tune also lists a rung at max_t itself, where a trial has ended and nothing is cut
        tune_rungs = sorted(m for m, _ in asha._brackets[0]._rungs if m < max_t)
        assert milestones(max_t, grace, rf) == tune_rungs, (max_t, grace, rf)
    assert grace_epochs(40, 0.25) == 10 and grace_epochs(90, 0.25) == 23 and grace_epochs(4, 0.01) == 1


@pytest.fixture
def rule(rung_rule):
    return rung_rule(0.25)


def _search_cfg(**sweep) -> SweepConfig:
    return from_dict(
        SweepConfig,
        dict(
            name="s",
            train=dict(student="res3_w16_d111", epochs=40),
            search_space={"lr": {"loguniform": [0.02, 0.2]}, "alpha": {"uniform": [0.5, 1.0]}},
            sweep={**dict(num_samples=12, grace_period="auto", reduction_factor=2), **sweep},
        ),
    )


def test_auto_grace_applies_the_recorded_fraction_to_the_search_length(rule):
    cfg = _search_cfg()
    assert cfg.grace() == 10 and cfg.reduction() == 2  # the config's factor: only `auto` takes the rule's
    assert _search_cfg(reduction_factor="auto").reduction() == 3
    assert auto_rungs(90)[:2] == (23, 3) and "expected cost to the winner" in auto_rungs(90)[2]
    said = search_statement(cfg)
    assert said["searches"] and said["rungs"] == [10, 20] and said["trials"] == 12
    assert said["statement"].startswith(
        "search: 12 candidates from random draws (random), ASHA judging them at epochs 10, 20 of 40"
    )
    assert "first rung at 25% of the schedule (10 of 40 epochs), keeping 1/3: on 12 recorded curves" in said["rule"]


def test_auto_grace_without_a_record_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(rungs, "RULE_FILE", tmp_path / "none.json")
    with pytest.raises(ConfigError, match="holds no rung rule; run bench/search_regret.py --write-rule"):
        _search_cfg()


def test_the_default_sweep_says_it_does_not_search():
    said = search_statement(load_sweep_config(ROOT / "configs" / "sweep.yaml"))
    assert not said["searches"]
    assert said["statement"].startswith(
        "this run does not search: 2 trial(s) of 2 epochs compare KD against its "
        "no-teacher control; then it trains one recipe (the final stage)"
    )


def test_a_search_whose_trials_cannot_be_judged_early_says_so(rung_rule):
    rung_rule(1.0)
    said = search_statement(_search_cfg())
    assert said["searches"] and said["rungs"] == [] and said["grace"] == 40
    assert said["statement"].startswith(
        "search: 12 candidates from random draws (random), each trained to its end: "
        "ASHA judges none early, since first rung at 100% of the schedule (40 of 40 epochs)"
    )


def test_the_searcher_option(rule):
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator.sweep.tune_run import searcher

    # random draws, seeded by train.seed: a search started over proposes the same candidates
    a, b = searcher(_search_cfg()), searcher(_search_cfg())
    assert [a._random_state.uniform() for _ in range(3)] == [b._random_state.uniform() for _ in range(3)]
    assert a.max_concurrent == _search_cfg().sweep.max_concurrent_trials
    assert isinstance(searcher(_search_cfg(searcher="optuna")), OptunaSearch)
    assert "Optuna's TPE" in search_statement(_search_cfg(searcher="optuna"))["statement"]
    with pytest.raises(ConfigError, match="searcher optuna samples search_space; `trials:` is a fixed list"):
        from_dict(
            SweepConfig,
            dict(
                name="s",
                trials=[{"lr": 0.1}],
                search_space={"alpha": {"choice": [0.5, 0.9]}},
                sweep=dict(searcher="optuna"),
            ),
        )
    with pytest.raises(ConfigError, match="search_space.lr: grid cannot be sampled by sweep.searcher optuna"):
        from_dict(SweepConfig, dict(name="s", search_space={"lr": {"grid": [0.1, 0.2]}}, sweep=dict(searcher="optuna")))
    with pytest.raises(ConfigError, match="sweep.searcher: 'tpe' is not allowed"):
        from_dict(SweepConfig, dict(name="s", sweep=dict(searcher="tpe")))


def _write_table(folder: Path):
    folder.mkdir()
    for c in _table(12):
        head = {"config": c.config, "trial": 0, "variant": c.variant}
        folder.joinpath(f"{c.name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in [head] + [{**r, "val_acc_raw": r["val_acc"]} for r in c.epochs])
        )


@pytest.mark.slow
def test_replay_compares_searchers_on_recorded_curves(tmp_path):
    """On 12 configurations whose order holds from half the schedule, ASHA judging there picks better than
    random search at the same trial-epochs, and ASHA judging at epoch 1 (ranks still noise) picks worse than
    both; the fidelity bench finds the half and writes its tables."""
    _write_table(tmp_path / "curves")
    out = tmp_path / "replay.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "search_replay.py"),
            "--curves",
            str(tmp_path / "curves"),
            "--length",
            "10",
            "--budgets",
            "60",
            "--graces",
            "1",
            "5",
            "--rfs",
            "3",
            "--repeats",
            "40",
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    rows = {(r["searcher"], r["scheduler"], r["grace"]): r for r in json.loads(out.read_text())["rows"]}
    plain, judged, early = rows[("random", "none", None)], rows[("random", "asha", 5)], rows[("random", "asha", 1)]
    assert plain["full"] == pytest.approx(6.0) and plain["spent"] == pytest.approx(60)  # 2 at a time, to the end
    assert judged["trials"] > plain["trials"] and judged["spent"] <= 60 + 2 * 10
    assert judged["regret"] < plain["regret"] < early["regret"]
    assert ("optuna", "asha", 5) in rows and ("random", "hyperband", 1) in rows
    lo, hi = judged["regret_ci90"]
    assert lo <= judged["regret"] <= hi and judged["regret_p90"] >= judged["regret"]  # a spread, not one number
    fid = tmp_path / "fidelity.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "search_fidelity.py"),
            "--curves",
            str(tmp_path / "curves"),
            "--length",
            "10",
            "--out",
            str(fid),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    got = json.loads(fid.read_text())
    assert got["judge"]["val_acc"] == 0.5 and got["levers"]


@pytest.mark.ray
@pytest.mark.slow
def test_an_optuna_search_under_asha_resumes_where_it_stopped(said, ray_local, tiny_teacher, tmp_path, monkeypatch):
    """sweep.searcher optuna through Ray Tune with ASHA: the run states its search; stopped (Ctrl-C) after two
    trials, the same command goes on with the same study (no proposal repeated) to all its trials."""
    import os
    import signal

    import pandas as pd
    from ray.tune import Callback

    import orchestrator.sweep.tune_callbacks as cbs
    from orchestrator.sweep.driver import run_sweep
    from orchestrator.sweep.tune_run import Interrupted

    cfg = smoke_config(
        tmp_path,
        "t_optuna",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 128,
            "train.epochs": 3,
            "train.student": "resdw_w24_d111",
            "trials": [],
            "final.epochs": 0,
            "search_space": {"lr": {"loguniform": [0.001, 0.2]}, "alpha": {"uniform": [0.3, 0.9]}},
            "sweep.searcher": "optuna",
            "sweep.num_samples": 6,
            "sweep.max_concurrent_trials": 1,
            "sweep.grace_period": 1,
            "sweep.reduction_factor": 2,
        },
    )

    flag = tmp_path / "ctrl_c"  # a file, not a counter: Tune restores its callbacks pickled as they began

    class CtrlC(Callback):  # the user's Ctrl-C once two trials have ended
        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended = getattr(self, "ended", 0) + 1
            if flag.exists() and self.ended == 2:
                flag.unlink()
                os.kill(os.getpid(), signal.SIGINT)

    flag.touch()
    monkeypatch.setattr(cbs, "DriverMemory", lambda name: CtrlC())
    with pytest.raises(Interrupted):
        run_sweep(cfg, teacher_path=str(tiny_teacher))
    assert any(
        m.startswith("search: 6 candidates from Optuna's TPE (optuna), ASHA judging them at epochs 1, 2 of 3")
        for m in said
    )
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    table = pd.read_csv(run_dir / "results.csv")
    assert len(table) == 6 and table["lr"].nunique() == 6  # the study went on: no proposal again
    assert (table["epoch"] < 3).any()  # ASHA cut at least one
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["search"]["searcher"] == "optuna" and meta["search"]["rungs"] == [1, 2]


def test_the_recorded_rule_is_the_measured_one():
    """orchestrator/rungs.json holds the regret rule bench/search_regret.py fitted to the committed
    curves (tests/test_regret.py checks the choice against its table), and the reversal table beside it."""
    rule = rungs.read_rule()
    curves = [c for folder in rule["curves"] for c in load_curves(ROOT / folder, rule["length"])]
    assert len(curves) == rule["n"] and rule["regret_mean"] <= rule["bound"] and rule["reversal"]
