"""A search's ledger and the drawn space, without Ray: candidates drawn the same for a seed, a student's
kwargs as search dimensions, per-candidate files that survive torn writes, refused mismatches."""

import io
import json

import pytest

from orchestrator.config import ConfigError, SweepConfig, from_dict
from orchestrator.errors import UserError
from orchestrator.run.ledger import Ledger, index_of
from orchestrator.space import draw_candidates, parse_space
from orchestrator.sweep.candidates import seeded_rungs
from trainables.config import merge_train

SPACE = {
    "student_kwargs.depths": {"choice": [[1, 1, 1], [2, 1, 1]]},
    "lr": {"loguniform": [0.01, 0.2]},
    "loss": {"grid": ["kd", "ce"]},
}


def test_candidates_are_drawn_up_front_the_same_for_a_seed():
    space = parse_space(SPACE)
    a, b = draw_candidates(space, 3, seed=0), draw_candidates(space, 3, seed=0)
    assert a == b and len(a) == 6  # each grid point x num_samples draws
    assert [c["loss"] for c in a] == ["kd"] * 3 + ["ce"] * 3
    assert all(0.01 <= c["lr"] <= 0.2 and c["student_kwargs.depths"] in ([1, 1, 1], [2, 1, 1]) for c in a)
    assert draw_candidates(space, 3, seed=1) != a
    assert len(draw_candidates(space, 2, 0, trials=[{"alpha": 0.5}, {"alpha": 0.9}])) == 8


def test_a_students_kwargs_merge_key_by_key():
    base = dict(student="arch", student_kwargs=dict(block="basic", attn="se"), lr=0.1)
    assert merge_train(base, {"student_kwargs.depths": [2, 1, 1]}, {"lr": 0.05}) == dict(
        student="arch", student_kwargs=dict(block="basic", attn="se", depths=[2, 1, 1]), lr=0.05
    )
    nested = merge_train(base, {"student_kwargs": {"attn": "eca"}})  # as Tune draws a nested space
    assert nested["student_kwargs"] == dict(block="basic", attn="eca") and base["student_kwargs"]["attn"] == "se"


def _cfg(space: dict, **sweep) -> SweepConfig:
    return from_dict(
        SweepConfig,
        dict(name="s", train=dict(student="arch", epochs=4), search_space=space, sweep=dict(num_samples=2, **sweep)),
    )


def test_a_drawn_kwarg_is_checked_against_the_student_in_one_line():
    assert _cfg({"student_kwargs.attn": {"choice": ["se", "eca"]}}).space()
    with pytest.raises(ConfigError, match=r"search_space.student_kwargs.block: value 'conv5' does not build arch"):
        _cfg({"student_kwargs.block": {"choice": ["basic", "conv5"]}})
    with pytest.raises(ConfigError, match=r"search_space.student_kwarg.depths: not a train key; .* student_kwargs.<k"):
        _cfg({"student_kwarg.depths": {"choice": [[1, 1, 1]]}})
    with pytest.raises(ConfigError, match="sweep.ledger draws the candidates up front, which Optuna's TPE cannot"):
        _cfg({"lr": {"loguniform": [0.01, 0.2]}}, searcher="optuna", ledger="l")
    with pytest.raises(
        ConfigError, match="grow: search_space.student_kwargs.depths: the grown search draws the recipe"
    ):
        from_dict(
            SweepConfig,
            dict(
                name="s",
                minutes=10,
                final=dict(epochs=2),
                grow=dict(search_space={"student_kwargs.depths": {"choice": [[1, 1, 1]]}}),
            ),
        )


def test_the_ledger_keeps_each_candidate_and_survives_a_torn_line(tmp_path):
    cands = draw_candidates(parse_space(SPACE), 2, seed=0)
    ledger = Ledger(tmp_path / "l")
    entries = ledger.open({"space": SPACE}, cands)
    assert [e.end for e in entries] == [None] * 4 and json.loads((tmp_path / "l" / "plan.json").read_text())
    ledger.epoch(1, dict(epoch=1, val_acc=0.5, node="x", lr=0.1))  # only the curve's keys are kept
    ledger.epoch(1, dict(epoch=2, val_acc=0.6))
    ledger.ended(1, "stopped at epoch 2")
    with open(tmp_path / "l" / "c002.jsonl", "w") as f:
        f.write('{"epoch": 1, "val_acc": 0.7}\n{"epoch": 2, "va')  # a crash mid-append
    ledger.epoch(2, dict(epoch=1, val_acc=0.71))  # trained again from its start, after the torn line
    assert (tmp_path / "l" / "c001.jsonl").read_text().count("\n") == 3  # a line each, none blank
    got = Ledger(tmp_path / "l").entries(cands)
    assert got[1].rows == [dict(epoch=1, val_acc=0.5), dict(epoch=2, val_acc=0.6)] and got[1].end.startswith("stopped")
    assert got[2].rows == [dict(epoch=1, val_acc=0.71)] and got[2].end is None  # the rerun, not the old start
    assert index_of(cands, json.loads(json.dumps(cands[3]))) == 3 and index_of(cands, {"lr": 1}) is None
    # the rungs a later chunk judges by: every ended candidate's values, not one training again
    rungs = seeded_rungs(got, 4, 1, 2)
    assert rungs.rungs[1] == {1: 0.5} and rungs.rungs[2] == {1: 0.6}
    with pytest.raises(UserError, match="is the ledger of another search"):
        Ledger(tmp_path / "l").open({"space": {}}, cands)
    # a chunk on another CPU resolves its own memory layout: still the same search
    ident = {"train": {"lr": 0.1, "layout": "channels_last"}}
    Ledger(tmp_path / "m").open(ident, cands)
    assert len(Ledger(tmp_path / "m").open({"train": {"lr": 0.1, "layout": "contiguous"}}, [])) == 4
    with pytest.raises(UserError, match="is the ledger of another search"):
        Ledger(tmp_path / "m").open({"train": {"lr": 0.2, "layout": "channels_last"}}, [])
    # a setting the code gained since the ledger began, at its default, changes nothing; set, it does
    assert len(Ledger(tmp_path / "m").open({"train": {"lr": 0.1, "branches": []}}, [])) == 4
    with pytest.raises(UserError, match="is the ledger of another search"):
        Ledger(tmp_path / "m").open({"train": {"lr": 0.1, "branches": [2]}}, [])
    ledger.keep_state(2, lambda tmp: tmp.write_bytes(b"x"))  # a candidate under way keeps its checkpoint
    assert ledger.state(2).read_bytes() == b"x" and ledger.state(1) is None
    ledger.keep_state(1, lambda tmp: tmp.write_bytes(b"x"))  # ended: nothing to keep
    assert not (tmp_path / "l" / "c001.pt").exists()
    ledger.ended(2, "finished")
    assert ledger.state(2) is None and not (tmp_path / "l" / "c002.pt").exists()
    assert ledger.rungs() == {}  # begun without rungs: the config's apply (ledger_rungs)
    assert Ledger(tmp_path / "l").open({"space": SPACE}, []) == Ledger(tmp_path / "l").entries(cands)


def test_the_front_is_what_no_cheaper_finished_candidate_matches(tmp_path):
    """Points from a ledger: counts of cuts by epoch, the front by MACs and by speed, the printed lines and
    the plot."""
    from orchestrator.release.front import cuts, front, front_lines, front_plot, ledger_points

    cands = [{"student_kwargs.depths": [1, 1, i], "lr": 0.1} for i in range(1, 5)]
    ledger = Ledger(tmp_path / "l")
    ledger.open({"x": 1}, cands)
    # (macs, img/s, curve, end): c0 cheap and good, c1 dearer and worse (off the front), c2 dearest and best,
    # c3 cut at epoch 1
    for i, (macs, speed, curve, end) in enumerate(
        [(5e6, 3000, [0.90, 0.93], "finished"), (9e6, 2000, [0.9, 0.92], "finished"),
         (20e6, 900, [0.91, 0.95], "finished"), (2e6, 4000, [0.5], "stopped at epoch 1")]
    ):  # fmt: skip
        for e, v in enumerate(curve, 1):
            ledger.epoch(i, dict(epoch=e, val_acc=v, params=90_000, macs=macs, images_per_s=speed))
        ledger.ended(i, end)
    points = ledger_points({"sweep": {"ledger": str(tmp_path / "l")}})
    assert [p.index for p in front(points)] == [0, 2] == [p.index for p in front(points, "images_per_s")]
    assert cuts(points) == {1: 1} and points[3].label == "d1-1-4 lr 0.1"
    lines = front_lines(points)
    assert lines[0] == "candidates: 4 reported, 3 trained to the end, 1 cut (1 at epoch 1)"
    assert lines[2].startswith("  c000 val 0.9300    5.0 M MACs") and lines[3].startswith("  c002 val 0.9500")
    assert front_plot(points, tmp_path / "f.png", winner=2, release=dict(val=0.94, macs=21e6, label="r")).stat().st_size
    assert ledger_points({"sweep": {"ledger": ""}}) == [] == front_lines([])


@pytest.mark.slow
def test_a_ledger_search_runs_without_ray_and_shares_the_ledger(tmp_path):
    """`kdsweep train` with sweep.ledger (a GPU machine without Ray): the candidates not yet ended train here
    in turn, judged at the same rungs and recorded in the same files; a second run trains only what a kill
    left without an end line."""
    from orchestrator.sweep.local import run_ledger_search
    from tests.conftest import smoke_config

    cfg = smoke_config(
        tmp_path,
        "t_local_ledger",
        {
            "data.train_limit": 256,
            "data.val_limit": 128,
            "train.loss": "ce",
            "train.epochs": 3,
            "train.student": "arch",
            "train.student_kwargs": {"block": "basic"},
            "search_space": {
                "student_kwargs.depths": {"choice": [[1, 1, 1], [1, 1, 2]]},
                "lr": {"loguniform": [1e-3, 0.2]},
            },
            "sweep.num_samples": 4,
            "sweep.grace_period": 1,
            "sweep.reduction_factor": 2,
            "sweep.ledger": str(tmp_path / "ledger"),
        },
    )
    entries = run_ledger_search(cfg, device="cpu")
    assert len(entries) == 4 and all(e.end for e in entries) and entries[0].end == "finished"  # the first: no rival
    assert all(e.end == "finished" or e.end == f"stopped at epoch {len(e.rows)}" for e in entries)
    assert "machine" in entries[0].rows[0] and entries[0].rows[0]["macs"] > 0
    last = tmp_path / "ledger" / "c003.jsonl"
    kept = {p.name: p.read_bytes() for p in (tmp_path / "ledger").glob("c00[012].jsonl")}
    last.write_text(last.read_text().splitlines()[0] + "\n")  # killed after its first epoch
    again = run_ledger_search(cfg, device="cpu")
    assert (
        again[3].end
        and again[3].rows[0]["epoch"] == 1
        and [r["epoch"] for r in again[3].rows] == list(range(1, len(again[3].rows) + 1))
    )
    assert {p.name: p.read_bytes() for p in (tmp_path / "ledger").glob("c00[012].jsonl")} == kept
    assert not list((tmp_path / "ledger").glob("*.pt"))  # every candidate ended: no checkpoint kept
    # cut off after its first epoch with the checkpoint the ledger keeps: it goes on from epoch 2
    import torch

    from orchestrator.run.ledger import Ledger
    from trainables.train import train_student

    class Cut(Exception):
        pass

    def first_epoch(metrics, state):
        Ledger(tmp_path / "ledger").keep_state(3, lambda tmp: torch.save(state, tmp))
        raise Cut

    last.write_text(last.read_text().splitlines()[0] + "\n")
    from orchestrator.sweep.prepare import prepare_data

    data, _ = prepare_data(cfg, None, device="cpu")
    with pytest.raises(Cut):
        train_student(cfg.trial_config(again[3].variant), data, report=first_epoch)
    assert (tmp_path / "ledger" / "c003.pt").is_file()
    third = run_ledger_search(cfg, device="cpu")
    lines = [json.loads(x) for x in last.read_text().splitlines()]  # whole lines, no blank ones between
    assert [r["epoch"] for r in lines if "epoch" in r] == [r["epoch"] for r in third[3].rows]  # epoch 1 not redone
    assert third[3].end and not (tmp_path / "ledger" / "c003.pt").exists()


def test_a_tie_between_the_two_best_goes_to_the_cheaper_shape():
    """rank_candidates: the two best finished candidates compared on the same validation images; inside
    the noise the cheaper (fewer multiply-adds) wins, said with the test's figures; a real difference keeps
    the better one first."""
    import numpy as np

    from orchestrator.run.ledger import Entry
    from orchestrator.sweep.candidates import rank_candidates
    from trainables.config import pack_mask, unpack_mask

    def right(n_right, first=0):
        ok = np.zeros(5000, bool)
        ok[first : first + n_right] = True
        return pack_mask(ok)

    assert unpack_mask(right(4700)).sum() == 4700 and len(unpack_mask(right(1))) == 5000

    def entry(i, best, macs, correct, end="finished"):
        return Entry(i, {}, [dict(epoch=1, val_acc=best, macs=macs)], end, correct)

    dear, cheap = entry(0, 0.9404, 20e6, right(4702)), entry(1, 0.9400, 5e6, right(4700))
    ranked, said = rank_candidates([dear, cheap, entry(2, 0.5, 1e6, None, "stopped at epoch 4")])
    assert [e.index for e in ranked] == [1, 0, 2]
    assert "c000 0.9404 against c001 0.9400" in said and "a tie" in said
    assert "the tie goes to the cheaper c001 (5.0 M multiply-adds against 20.0 M)" in said
    better = entry(0, 0.9440, 20e6, right(4720))  # 20 images more, none fewer: real
    ranked, said = rank_candidates([better, cheap])
    assert [e.index for e in ranked] == [0, 1] and "c000 better" in said and "tie goes" not in said
    assert rank_candidates([cheap]) == ([cheap], "")  # one candidate: nothing to compare


def test_a_search_keeps_the_rungs_it_began_with(tmp_path, rung_rule):
    """The rungs are the ledger's, as decided when the search began: a rule refitted since changes neither
    the ledger's identity nor how its remaining candidates are judged."""
    from orchestrator.sweep.candidates import ledger_rungs, open_ledger

    rung_rule(0.25, rf=3)
    cfg = _cfg(
        {"lr": {"loguniform": [0.01, 0.2]}}, grace_period="auto", reduction_factor="auto", ledger=str(tmp_path / "l")
    )
    ledger, cands = open_ledger(cfg)
    assert ledger_rungs(cfg, ledger) == (1, 3) and ledger.rungs() == {"grace": 1, "reduction_factor": 3}
    rung_rule(0.5, rf=2)  # refitted: grace 2 of 4, keep 1/2
    assert (cfg.grace(), cfg.reduction()) == (2, 2)
    again, same = open_ledger(cfg)  # not "another search"
    assert same == cands and ledger_rungs(cfg, again) == (1, 3)


def test_the_tune_callback_keeps_a_training_candidates_checkpoint_in_the_ledger(tmp_path):
    """LedgerCheckpoints (the driver's Tune callback): each checkpoint a candidate's trial registers is
    copied whole into the ledger, the latest replacing the one before; none once the candidate has ended."""
    from types import SimpleNamespace

    from ray.tune import Checkpoint

    from orchestrator.sweep.tune_callbacks import LedgerCheckpoints

    cands = draw_candidates(parse_space(SPACE), 2, seed=0)
    ledger = Ledger(tmp_path / "l")
    ledger.open({"space": SPACE}, cands)
    keep = LedgerCheckpoints(ledger, cands)
    for epoch in (1, 2):
        d = tmp_path / f"ckpt{epoch}"
        d.mkdir()
        (d / "checkpoint.pt").write_bytes(b"epoch %d" % epoch)
        trial = SimpleNamespace(config={"_variant": json.loads(json.dumps(cands[1]))})
        keep.on_checkpoint(0, [], trial, Checkpoint.from_directory(str(d)))
    assert ledger.state(1).read_bytes() == b"epoch 2"
    keep.on_checkpoint(0, [], SimpleNamespace(config={"_variant": {"lr": 9}}), Checkpoint.from_directory(str(d)))
    assert sorted(p.name for p in (tmp_path / "l").glob("*.pt")) == ["c001.pt"]  # not a candidate: nothing
    ledger.ended(1, "stopped at epoch 2")
    keep.on_checkpoint(0, [], trial, Checkpoint.from_directory(str(d)))  # registered after the end line
    assert not list((tmp_path / "l").glob("*.pt"))


def test_a_final_stage_in_chunks_keeps_its_trials_checkpoints_by_settings_and_seed(tmp_path):
    """FinalCheckpoints keeps a final trial's latest checkpoint in the ledger under a name of the stage's
    settings (not the machine's layout) and the trial's seed; the next chunk's stage finds it by the same
    name and hands it to that trial; a finished trial's is removed; a torn one is not handed on."""
    from types import SimpleNamespace

    import torch
    from ray.tune import Checkpoint

    from orchestrator.sweep.stages import _kept_resumes, final_name
    from orchestrator.sweep.tune_callbacks import FinalCheckpoints
    from trainables.config import resume_key

    base = dict(lr=0.1, epochs=90, layout="channels_last")
    assert final_name(base, {"seed": 0}) == final_name({**base, "layout": "contiguous"}, {"seed": 0})
    assert final_name(base, {"seed": 0}) != final_name(base, {"seed": 1}) != final_name({**base, "epochs": 40}, {})
    ledger = Ledger(tmp_path / "l")
    keep = FinalCheckpoints(ledger, lambda c: final_name(base, c))
    d = tmp_path / "ckpt"
    d.mkdir()
    torch.save({"epoch": 7}, d / "checkpoint.pt")
    seed0, seed1 = SimpleNamespace(config={"seed": 0}), SimpleNamespace(config={"seed": 1})
    keep.on_checkpoint(0, [], seed0, Checkpoint.from_directory(str(d)))
    keep.on_checkpoint(0, [], seed1, Checkpoint.from_directory(str(d)))
    (tmp_path / "l" / final_name(base, {"seed": 1})).write_bytes(b"torn")
    names = {resume_key(c): (final_name(base, c), f"seed {c['seed']}") for c in ({"seed": 0}, {"seed": 1}, {"seed": 2})}
    with pytest.warns(UserWarning, match="cannot be read whole"):
        got = _kept_resumes(ledger, names, "final stage")
    assert list(got) == [resume_key({"seed": 0})] and torch.load(io.BytesIO(got[resume_key({"seed": 0})]))["epoch"] == 7
    keep.on_trial_complete(0, [], seed0)
    assert not (tmp_path / "l" / final_name(base, {"seed": 0})).exists()
