"""Through real Ray: a Tune sweep with ASHA and export, and the teacher on Ray Train.

One local Ray serves the module (started by the `ray_local` fixture on loopback
when `make test` runs pytest in a loopback-only network namespace).
"""

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orchestrator import data as data_mod
from orchestrator.errors import UserError
from orchestrator.run.trial import result_lines
from tests.conftest import smoke_config
from trainables.layout import LAYOUTS


@pytest.fixture(scope="module")
def sweep_run(ray_local, tiny_teacher, tmp_path_factory, request):
    """4 trials, sequential so that ASHA's first rung has a reference to cut against."""
    from orchestrator.sweep.driver import run_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    opened = []
    real_open = data_mod._open_idx

    def audit(path):
        opened.append(str(path))
        return real_open(path)

    mp = pytest.MonkeyPatch()
    mp.setattr(data_mod, "_open_idx", audit)
    cfg = smoke_config(
        tmp,
        "t_sweep",
        {
            "sweep.max_concurrent_trials": 1,
            "teacher.mode": "clean",
            "data.train_limit": 768,
            "train.epochs": 3,
            "sweep.grace_period": 1,
            "sweep.reduction_factor": 2,
            "search_space": {},
            "train.student": "starter_model_2",
            "train.batch_size": 64,
            "trials": [{"lr": 0.05}, {"lr": 1.0e-5}, {"lr": 2.0e-5}, {"lr": 0.03, "loss": "ce"}],
        },
    )
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    mp.undo()
    return run_dir, opened, cfg, tmp


def test_sweep_results_and_asha(sweep_run):
    run_dir, _, cfg, _ = sweep_run
    table = pd.read_csv(run_dir / "results.csv")
    assert len(table) == 4
    assert table["val_acc"].max() > 0.3
    # varied keys show what each trial ran with, the base config's value where a variant left them alone
    assert sorted(table["loss"]) == ["ce", "kd", "kd", "kd"]
    assert sorted(table["lr"]) == [1.0e-5, 2.0e-5, 0.03, 0.05]
    # ASHA: at least one trial stopped before the last epoch
    progress = [pd.read_json(p, lines=True)["epoch"].max() for p in run_dir.glob("*/result.json")]
    assert len(progress) == 4 and min(progress) < cfg.train.epochs
    # per-epoch metrics where `tensorboard --logdir runs/<name>` finds them
    events = [next(p.parent.glob("events.out.tfevents*")) for p in run_dir.glob("*/result.json")]
    assert len(events) == 4 and all(b"val_acc" in e.read_bytes() for e in events)


def test_teacher_ran_once(sweep_run):
    run_dir, _, cfg, _ = sweep_run
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["teacher_forwards"] == 768 == meta["n_train"]  # clean mode: one forward per training image
    assert meta["n_trials"] == 4


def test_sweep_never_opens_test_split(sweep_run):
    _, opened, _, _ = sweep_run
    assert any("train-images" in p for p in opened)
    assert not any("t10k" in p for p in opened)


@pytest.fixture(scope="module")
def exported(sweep_run):
    """The smoke sweep exported once, for the tests that read an export."""
    from orchestrator.release.export import export

    out = sweep_run[3] / "exported"
    return export(sweep_run[0], out), out


def test_export(sweep_run, exported):
    from orchestrator.release.deploy import Deployable, predict
    from students import rebuild

    run_dir = sweep_run[0]
    m, out = exported
    for f in ["student.pt", "student.pt2", "summary.txt", "metrics.json", "submission.csv", "report.md"]:
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"] == 95_386 and 0 <= metrics["test_acc"] <= 1
    assert metrics["train_precision"] == "fp32"  # smoke.yaml leaves precision at its fp32 default
    assert metrics["val_acc"] == pd.read_csv(run_dir / "results.csv")["val_acc"].max()
    assert metrics["teacher_forwards"] == 768
    rows = list(csv.reader(open(out / "submission.csv")))
    assert rows[0] == ["id", "label"] and len(rows) == 10_001 and rows[1][0] == "0"
    ckpt = torch.load(out / "student.pt", weights_only=True)
    assert ckpt["config"]["tta"] == metrics["tta"]  # the weights name what the .pt2 runs
    eager = Deployable(rebuild(ckpt), ckpt["config"]["mean"], ckpt["config"]["std"], metrics["tta"]).eval()
    prog = torch.export.load(str(out / "student.pt2")).module()
    for n in (1, 7, 300):
        x = torch.rand(n, 1, 28, 28)
        with torch.no_grad():
            assert torch.allclose(prog(x), eager(x), atol=1e-5)
    test_x, test_y = data_mod.load_test()
    pred = predict(eager, test_x[:500]).argmax(1).numpy()
    assert np.array_equal(pred, np.array([int(r[1]) for r in rows[1:501]]))
    # ONNX, checked by its own runtime
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 37):
        x = torch.rand(n, 1, 28, 28)
        with torch.no_grad():
            assert np.abs(sess.run(None, {"pixels": x.numpy()})[0] - eager(x).numpy()).max() < 1e-4
    assert set(metrics["latency_ms"]) == {"student.pt2 (torch)", "student.onnx (onnxruntime)"}
    assert metrics["config"]["loss"] == metrics["loss"] and metrics["file_bytes"]["student.onnx"] > 0
    assert not list(out.glob("*.data"))  # the ONNX file carries its weights: one file ships
    here = str(Path(__file__).resolve().parents[1]).encode()  # no file ships this machine's source paths
    assert [f.name for f in out.iterdir() if here in f.read_bytes()] == []


def test_report(sweep_run, exported):
    """The report of a smoke run: summary, a row per trial, every plot as a valid PNG inside the HTML, and a
    method text that names the loss and temperature the run used."""
    import base64
    import re

    cfg = sweep_run[2]
    m, out = exported
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "Total params" in md and "Total params" in page  # torchinfo summary
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {
        "val_curves.png",
        "acc_vs_params.png",
        "kd_vs_control.png",
        "confusion_val.png",
        "search_anytime.png",
    }  # 4 trials under ASHA: a search, with its anytime curve
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 5 and all(base64.b64decode(e)[:8] == b"\x89PNG\r\n\x1a\n" for e in embedded)
    for p in pngs:
        assert f"]({p.name})" in md and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trials_rows = [line for line in md.splitlines() if line.startswith("| search |")]
    assert len(trials_rows) == 4
    assert any(s in page for s in ("stopped by ASHA", "finished"))
    win = m["config"]
    assert f"`{win['loss']}`" in md  # the exported student's loss
    kd = cfg.trial_config({})  # smoke.yaml's kd trials: T 4, alpha 0.9
    assert f"kd T{kd.temperature:g} a{kd.alpha:g}" in md and "no-teacher control" in md
    assert "measured once, at export" in md and "torch.export.load" in md


def test_predict_png_and_idx(exported, tmp_path):
    """`kdsweep predict` gives the exported model's class for test images written out as PNG (and as IDX)."""
    import gzip
    import struct

    from PIL import Image

    from orchestrator.cli import main as cli
    from orchestrator.data import CLASSES
    from orchestrator.release.predict import NotAnImageError, classify

    out = exported[1]
    expected = [int(r[1]) for r in list(csv.reader(open(out / "submission.csv")))[1:9]]
    test_x, _ = data_mod.load_test()
    paths = []
    for i in range(8):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(test_x[i]).save(p)
        paths.append(str(p))
    got = classify(str(out / "student.pt2"), paths)
    assert [CLASSES.index(c) for _, c, _ in got] == expected and all(0 < p <= 1 for *_, p in got)
    assert [c for _, c, _ in classify(str(out / "student.onnx"), paths)] == [c for _, c, _ in got]
    idx = tmp_path / "few.idx.gz"
    idx.write_bytes(gzip.compress(struct.pack(">IIII", 2051, 8, 28, 28) + test_x[:8].tobytes()))
    assert [c for _, c, _ in classify(str(out / "student.pt2"), [str(idx)])] == [c for _, c, _ in got]
    # a large, inverted colour photo of the same garment classifies the same
    big = Image.fromarray(255 - test_x[0]).resize((280, 280)).convert("RGB")
    big.save(tmp_path / "photo.jpg", quality=95)
    assert classify(str(out / "student.pt2"), [str(tmp_path / "photo.jpg")])[0][1] == got[0][1]
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(NotAnImageError, match="not an image"):
        classify(str(out / "student.pt2"), [str(tmp_path / "notes.txt")])
    assert cli(["predict", "--model", str(out / "student.pt2"), str(tmp_path / "notes.txt")]) == 2


def test_export_refuses_over_budget(sweep_run, tmp_path):
    from orchestrator.release.export import export

    with pytest.raises(ValueError, match="budget"):
        export(sweep_run[0], tmp_path / "o", budget=1000)


def test_views_sweep_teacher_runs_n_times_views(ray_local, tiny_teacher, tmp_path, monkeypatch):
    from orchestrator.sweep.driver import run_sweep
    from trainables.train import TrialData

    puts, real_put = [], ray_local.put

    def counting_put(value, *a, **k):
        puts.append(type(value).__name__)
        return real_put(value, *a, **k)

    monkeypatch.setattr(ray_local, "put", counting_put)
    cfg = smoke_config(
        tmp_path,
        "t_views",
        {
            "data.train_limit": 128,
            "data.val_limit": 64,
            "train.epochs": 1,
            "augment.shift": 1,
            "search_space": {"student": {"grid": ["resdw_w24_d111", "starter_model_1", "starter_model_3"]}},
        },
    )
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["n_trials"] == 3 and meta["teacher_forwards"] == 128 * 18  # N x views, whatever the trials
    assert puts.count(TrialData.__name__) == 1  # arrays + logits enter the object store once for 3 trials
    again = run_sweep(dataclasses.replace(cfg, name="t_views2", search_space={}), teacher_path=str(tiny_teacher))
    assert json.loads((again / "kdsweep_meta.json").read_text())["teacher_forwards"] == 0  # cache hit


def test_budget_checked_before_ray(tmp_path, monkeypatch):
    from orchestrator.config import SweepConfig, from_dict
    from orchestrator.sweep.driver import run_sweep
    from orchestrator.sweep.prepare import BudgetError

    cfg = from_dict(SweepConfig, {"name": "b", "budget": 50_000, "train": {"student": "starter_model_1"}})
    with pytest.raises(BudgetError, match="starter_model_1 has 95,530 parameters"):
        run_sweep(cfg)


def test_teacher_on_ray_train_checkpoints_and_resumes(ray_local, tmp_path, monkeypatch):
    from orchestrator.config import from_dict
    from orchestrator.teacher import train as train_mod
    from orchestrator.teacher.config import TeacherTrainConfig
    from orchestrator.teacher.model import load_teacher
    from orchestrator.teacher.train import history_path, train_ray

    raw = dict(
        arch="resnet10",
        data=dict(train_limit=256, val_limit=128),
        cpus_per_worker=1,
        optim=dict(epochs=2, batch_size=64, lr=0.05),
    )
    cfg = from_dict(TeacherTrainConfig, raw)
    marker = str(tmp_path / "failed-once")

    def crash_once_after_a_checkpoint(config):  # pickled by value into the worker, which has the real loop
        import os

        import ray.train

        import orchestrator.teacher.train as real

        report = ray.train.report

        def report_then_crash(metrics, checkpoint=None):
            report(metrics, checkpoint=checkpoint)
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("injected: the worker dies after its first checkpoint")

        ray.train.report = report_then_crash
        return real._ray_train_loop(config)

    monkeypatch.setattr(train_mod, "_ray_train_loop", crash_once_after_a_checkpoint)
    out = train_ray(cfg, tmp_path / "runs" / "t", tmp_path / "rel" / "teacher.pt")
    assert Path(marker).exists()  # the worker crashed after epoch 1 and Ray Train restarted it
    meta = json.loads(out.with_suffix(".json").read_text())
    history = json.loads(history_path(out).read_text())
    assert [h["epoch"] for h in history] == [1, 2]  # resumed at epoch 2, not restarted from 1
    assert meta["arch"] == "resnet10" and meta["trained_with"].startswith("Ray Train")
    model, info = load_teacher(out)  # `teacher eval` loads the release
    assert info.arch == "resnet10" and info.preprocess.mean == pytest.approx(0.286)


def test_search_then_final_stage(ray_local, tiny_teacher, tmp_path):
    """final.epochs retrains the search's `top` best (by val_acc) longer, once per seed; export reads that stage."""
    from orchestrator.release.export import best_checkpoint, export, export_dir
    from orchestrator.sweep.driver import run_sweep

    cfg = smoke_config(
        tmp_path,
        "t_final",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 128,
            "train.epochs": 1,
            "train.student": "resdw_w24_d111",
            "search_space": {},
            "trials": [{"lr": 0.05, "loss": "lskd", "temperature": 2.0}, {"lr": 1.0e-6}],
            "final.epochs": 2,
            "final.seeds": 2,
            "final.top": 2,
            "final.minutes": 60,
        },
    )  # a budget the cap fits in
    opened, real_open = [], data_mod._open_idx
    mp = pytest.MonkeyPatch()
    mp.setattr(data_mod, "_open_idx", lambda path: opened.append(str(path)) or real_open(path))
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    mp.undo()
    assert opened and not any("t10k" in p for p in opened)  # search and final never read the test split
    table = pd.read_csv(run_dir / "results.csv")
    search, final = table[table.stage == "search"], table[table.stage == "final"]
    assert len(search) == 2 and len(final) == 4  # 2 finalists x 2 seeds
    best = search.sort_values("val_acc").iloc[-1]
    assert best["lr"] == 0.05 and best["loss"] == "lskd"  # the lr 1e-6 trial cannot have won
    assert sorted(final["seed"]) == [0, 0, 1, 1] and set(final["epoch"]) <= {1, 2}
    assert set(final["loss"]) == {"lskd", "kd"} and set(final["lr"]) == {0.05, 1e-6}  # both finalists, shown
    assert set(final[final.loss == "lskd"]["temperature"]) == {2.0}  # each with its own settings
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["final"]["winner"]["loss"] == "lskd" and meta["final"]["winner"]["epochs"] == 2
    assert [f["lr"] for f in meta["final"]["finalists"]] == [0.05, 1e-6]  # best first
    assert meta["final"]["minutes"] == 60 and meta["final"]["epochs_cap"] == 2 and meta["final"]["epochs"] == 2
    assert len(meta["final"]["search_seconds_per_epoch"]) == 2 and min(meta["final"]["search_seconds_per_epoch"]) > 0
    assert export_dir(run_dir) == run_dir / "final"
    from orchestrator.release.results import table as results_table  # `kdsweep results`, without Ray

    shown = results_table(run_dir)
    assert list(shown["stage"]) == ["search"] * 2 + ["final"] * 4
    assert set(shown[shown.stage == "final"]["epochs"]) == {"2/2"} and "status" in shown
    path, state = best_checkpoint(export_dir(run_dir))
    assert "final" in path.parts and state["config"]["epochs"] == 2 and state["config"]["temperature"] == 2.0
    m = export(run_dir, tmp_path / "out")
    assert m["val_acc"] == final["val_acc"].max() and m["teacher_val_acc"] is not None
    # rerunning the finished run trains nothing again: both experiments are restored as they are
    again = run_sweep(cfg, teacher_path=str(tiny_teacher))
    assert len(pd.read_csv(again / "results.csv")) == 6


def test_a_final_stage_budget_lowers_its_epochs_and_a_resumed_stage_keeps_them(said, ray_local, tiny_teacher, tmp_path):
    """final.minutes: the stage trains what fits at the search's measured seconds per epoch (here one epoch,
    not the cap's 30), and a resumed stage keeps the length it began with."""
    from orchestrator.sweep.driver import run_sweep

    cfg = smoke_config(
        tmp_path,
        "t_budget",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 128,
            "train.epochs": 1,
            "train.student": "resdw_w24_d111",
            "search_space": {},
            "trials": [{"lr": 0.05}],
            "final.epochs": 30,
            "final.minutes": 0.001,
            "minutes": 0.01,  # 0.06 s: less than any epoch
            "final.min_epochs": 2,
            "final.cpus_per_trial": 2,
            "train.layout": "auto",
        },
    )  # what the result needs; the finalist on both cores; the layout timed by the plan
    said.clear()
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    # the plan, from speeds measured here, before the cache: over the whole run's 0.6 s, and said so, with
    # the final stage at its floor and its trials' two threads timed
    [plan] = [m for m in said if m.startswith("plan: ~")]
    assert "cache " in plan and "search " in plan and "OVER the 0.01-minute budget" in plan
    assert "keeps the 2 epochs the result needs" in plan and "final trials on 2 CPUs" in plan
    assert said.index(plan) < next(i for i, m in enumerate(said) if m.startswith("teacher logits"))
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["final"]["epochs"] == 2 and meta["final"]["epochs_cap"] == 30 and meta["plan"]["final_speedup"] > 0
    # train.layout auto: the plan timed both layouts, said which it took, and the trials ran in it
    [said_layout] = [m for m in said if m.startswith("layout: ")]
    assert said.index(said_layout) < said.index(plan) and set(meta["plan"]["layout_img_s"]) == set(LAYOUTS)
    assert said_layout.startswith(f"layout: {meta['plan']['layout']} for the trials' step")
    kept = [torch.load(c, weights_only=True) for c in run_dir.glob("**/checkpoint.pt")]
    assert kept and {c["config"]["layout"] for c in kept} == {meta["plan"]["layout"]}
    final = pd.read_csv(run_dir / "results.csv").query("stage == 'final'")
    assert list(final["epoch"]) == [2]
    assert any("0.001-minute budget" in m and "-> 2 epochs (cap 30, floor 2)" in m for m in said)

    def threads(pattern):
        return {r["threads"] for p in run_dir.glob(pattern) for r in result_lines(p)}

    assert threads("*/result.json") == {1} and threads("final/*/result.json") == {2}  # search: one thread each
    # a driver killed after the stage began: the rerun restores it, and a new measurement (faked here: 5
    # epochs would fit now) must not change the length of trials that began with one
    import orchestrator.sweep.stages as stages

    (run_dir / "kdsweep_meta.json").unlink()
    said.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "fit_final_epochs", lambda *a, **k: 5)
        run_sweep(cfg, teacher_path=str(tiny_teacher))
    assert any("resuming the interrupted experiment" in m and "final" in m for m in said)
    assert any("-> 2 epochs (cap 30, floor 2), as when the stage began" in m for m in said)
    assert json.loads((run_dir / "kdsweep_meta.json").read_text())["final"]["epochs"] == 2
    assert list(pd.read_csv(run_dir / "results.csv").query("stage == 'final'")["epoch"]) == [2]


# the default's shape on a few hundred images: KD beside its no-teacher control, the control a reference row
DEFAULT_SHAPE = {
    "teacher.mode": "clean",
    "data.train_limit": 256,
    "data.val_limit": 128,
    "train.epochs": 1,
    "train.student": "resdw_w24_d111",
    "search_space": {},
    "trials": [{"loss": "kd", "alpha": 0.5}, {"loss": "ce"}],
    "final.control": "reference",
}


def _probe_says(mp, seconds: float):
    """The plan's probe faked: every student's epoch takes `seconds` here."""
    import orchestrator.sweep.driver as sweep_mod

    mp.setattr(sweep_mod, "student_epoch_seconds", lambda cfg, *a, **k: {s: seconds for s in cfg.students()})


def test_a_check_the_budget_cannot_spare_is_skipped_and_stays_skipped(said, ray_local, tiny_teacher, tmp_path):
    """The default's shape (KD beside its control, the control a reference row, one finalist) where the
    search would cost final epochs (the probe faked at 10 s an epoch, 2 minutes in all): no search trial
    runs, the final stage trains the KD trial, and the log, the meta record, `kdsweep results` and the
    report say that the control was not run; a rerun does not start the search it skipped."""
    from orchestrator.release.method import method_text
    from orchestrator.release.results import account_lines, search_account, trials
    from orchestrator.sweep.driver import run_sweep

    cfg = smoke_config(
        tmp_path,
        "t_skip",
        {
            **DEFAULT_SHAPE,
            "final.epochs": 30,
            "final.min_epochs": 8,  # what the check would leave it (7-8 epochs of 10 s): it cannot be spared
            "minutes": 2,
        },
    )
    said.clear()
    with pytest.MonkeyPatch.context() as mp:
        _probe_says(mp, 10.0)
        run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    [why] = [m for m in said if "cannot change the finalist" in m]
    assert "no more than the 8 epochs the result needs" in why and "skipped, the final stage trains" in why
    assert not list(run_dir.glob("*/result.json")) and len(list(run_dir.glob("final/*/result.json"))) == 1
    table = pd.read_csv(run_dir / "results.csv")
    assert list(table["stage"]) == ["final"] and list(table["loss"]) == ["kd"] and table["epoch"].iloc[0] > 1
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["search"]["skipped"] == why and meta["plan"]["search_s"] == 0
    assert account_lines(search_account(trials(run_dir), meta)) == [f"search: skipped ({why})"]
    [t] = trials(run_dir)  # the report's method text, as the export writes it (without an export's cost)
    # the fitted length is an estimate: the trial refits it to the budget at its own measured epochs
    assert t["config"]["time_budget_s"] > 0 and any("refits its length" in m for m in said)
    assert t["status"] == "finished"
    win = dict(config=t["config"], params=8_962, student=t["config"]["student"])
    cfg_json = json.loads((run_dir / "kdsweep_config.json").read_text())
    text = " ".join(method_text(trials(run_dir), win, meta, cfg_json))
    assert f"**Search.** Not run: {why}." in text and "The no-teacher control was not run this time" in text
    # a driver killed in the final stage: the rerun (the probe now says the search fits) skips it again
    (run_dir / "kdsweep_meta.json").unlink()
    said.clear()
    run_sweep(cfg, teacher_path=str(tiny_teacher))
    assert any(m.startswith("search: skipped when this run began") for m in said)
    assert not list(run_dir.glob("*/result.json"))


def test_a_budget_with_room_grows_the_search_and_keeps_it_grown(said, ray_local, tiny_teacher, tmp_path, rung_rule):
    """The default's shape (KD beside its control) with a grow space and a budget the probe (faked at 1 s an
    epoch) says affords more than grow.max_candidates: the search is 3 random draws from grow.search_space of
    grow.epochs each, in place of the config's trials; the log, the meta record and the run's record say so;
    a driver killed in the final stage resumes the grown search even where the probe now says it has no room."""
    from orchestrator.release.results import trials
    from orchestrator.sweep.driver import run_sweep

    rung_rule(1.0, rf=2)  # a regret rule that cuts nothing: every grown candidate to its end
    lrs = [0.05, 0.1, 0.2]
    cfg = smoke_config(
        tmp_path,
        "t_grow",
        {
            **DEFAULT_SHAPE,
            "final.epochs": 1,
            "minutes": 10,
            "grow": {"search_space": {"lr": {"choice": lrs}}, "epochs": 2, "min_candidates": 2, "max_candidates": 3},
        },
    )
    said.clear()
    with pytest.MonkeyPatch.context() as mp:
        _probe_says(mp, 1.0)
        run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    [why] = [m for m in said if m.startswith("grow: ")]
    assert "room for 3 candidate(s) of 2 epochs" in why and "the search grows to 3 random draws" in why
    assert any(m.startswith("search grown: ") and "search: 3 candidates from random draws" in m for m in said)
    search = [t for t in trials(run_dir) if t["stage"] == "search"]
    assert len(search) == 3 and all(t["epochs_run"] == 2 and t["config"]["loss"] == "kd" for t in search)
    assert {t["config"]["lr"] for t in search} <= set(lrs)
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["plan"]["grown"] == 3 and meta["search"]["grow"] == why.removeprefix("grow: ")
    assert json.loads((run_dir / "search_grown.json").read_text())["candidates"] == 3
    (run_dir / "kdsweep_meta.json").unlink()  # as if the driver died in the final stage
    said.clear()
    with pytest.MonkeyPatch.context() as mp:
        _probe_says(mp, 1e4)
        run_sweep(cfg, teacher_path=str(tiny_teacher))
    assert any(m.startswith("search grown: ") for m in said) and not any(m.startswith("grow: ") for m in said)
    assert len([t for t in trials(run_dir) if t["stage"] == "search"]) == 3


def test_retry_from_checkpoint_and_divergence(ray_local, tiny_teacher, tmp_path, monkeypatch):
    """A trial that raises after its first checkpoint is retried from it (no epoch redone); a trial whose loss
    becomes inf ends as diverged, with its reason, without retries, and the sweep goes on."""
    from types import SimpleNamespace

    from orchestrator.sweep.driver import run_sweep
    from trainables import tune_trainable

    marker = str(tmp_path / "raised-once")

    def flaky(config, data, base, threads, use_gpu, resumes=None):
        # pickled by value into the worker, which has the real one
        import os

        from ray import tune as rt

        import trainables.tune_trainable as tt

        tt.tune = rt
        if config["_variant"]["lr"] == 0.05 and not os.path.exists(marker):

            def report_then_die(metrics, checkpoint=None):
                rt.report(metrics, checkpoint=checkpoint)
                open(marker, "w").close()
                raise RuntimeError("injected: the worker dies after its first checkpoint")

            tt.tune = SimpleNamespace(
                report=report_then_die,
                Checkpoint=rt.Checkpoint,
                get_checkpoint=rt.get_checkpoint,
                get_context=rt.get_context,
            )
        return tt.distill_trainable(config, data, base, threads, use_gpu, resumes)

    monkeypatch.setattr(tune_trainable, "distill_trainable", flaky)
    cfg = smoke_config(
        tmp_path,
        "t_faults",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 64,
            "train.epochs": 3,
            "sweep.grace_period": 3,
            "sweep.max_failures": 2,
            "search_space": {},
            "train.student": "resdw_w24_d111",
            "trials": [{"lr": 0.05}, {"lr": 1.0e12, "loss": "ce", "optimizer": "sgd", "schedule": "constant"}],
        },
    )
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    assert Path(marker).exists()  # the failure happened
    table = pd.read_csv(run_dir / "results.csv")
    ok, bad = table[table.lr == 0.05].iloc[0], table[table.lr == 1.0e12].iloc[0]
    assert ok["status"] == "finished"
    assert bad["status"].startswith("diverged at epoch 1, step ") and "lr" in bad["status"]
    ok_dir = next(
        p.parent
        for p in run_dir.glob("*/result.json")
        if "lr=0.05" in p.parent.name or json.loads(p.read_text().splitlines()[0])["config"]["_variant"]["lr"] == 0.05
    )
    epochs = [json.loads(line)["epoch"] for line in (ok_dir / "result.json").read_text().splitlines()]
    assert epochs == [1, 2, 3]  # resumed at epoch 2: nothing redone
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["errors"] == 0  # retried to success; divergence is no error


def test_run_identity_and_finished_runs(said, ray_local, tiny_teacher, tmp_path):
    """Rerunning a name with another teacher is refused, naming it; a finished run is exported, not retrained;
    --force starts it over."""
    import shutil

    from orchestrator.sweep.driver import run_sweep

    cfg = smoke_config(
        tmp_path,
        "t_ident",
        {
            "teacher.mode": "clean",
            "data.train_limit": 128,
            "data.val_limit": 64,
            "train.epochs": 1,
            "search_space": {},
        },
    )
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    other = tmp_path / "other.pt"
    shutil.copy(tiny_teacher, other)
    shutil.copy(tiny_teacher.with_suffix(".json"), other.with_suffix(".json"))
    with open(other, "ab") as f:
        f.write(b"\0")  # other bytes, same loadable layout
    with pytest.raises(ValueError, match="the teacher: .*tiny.pt -> .*other.pt"):
        run_sweep(cfg, teacher_path=str(other))
    said.clear()
    before = sorted(p.stat().st_mtime for p in run_dir.glob("*/result.json"))
    run_sweep(cfg, teacher_path=str(tiny_teacher), export_to=str(tmp_path / "out"))
    assert any("already finished" in s for s in said) and (tmp_path / "out" / "student.pt2").is_file()
    assert sorted(p.stat().st_mtime for p in run_dir.glob("*/result.json")) == before  # nothing retrained
    said.clear()
    run_sweep(cfg, teacher_path=str(other), force=True)
    assert any("--force" in s for s in said)
    assert json.loads((run_dir / "kdsweep_config.json").read_text())["_teacher"]["path"] == str(other.resolve())


def test_export_is_atomic_and_owned(sweep_run, tmp_path, monkeypatch):
    """An export that dies half-way leaves the previous export whole (or nothing); sha256s are recorded;
    exporting over another run's artifacts needs force; files the export does not write are kept."""
    import hashlib

    from orchestrator.release import export as ex

    run_dir = sweep_run[0]
    out = tmp_path / "out"

    def boom(*a, **k):
        raise RuntimeError("injected: the export dies while writing ONNX")

    monkeypatch.setattr(ex, "export_onnx", boom)
    with pytest.raises(RuntimeError, match="injected"):
        ex.export(run_dir, out)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    monkeypatch.undo()
    m = ex.export(run_dir, out)
    assert m["sha256"]["student.pt2"] == hashlib.sha256((out / "student.pt2").read_bytes()).hexdigest()
    monkeypatch.setattr(ex, "export_onnx", boom)
    with pytest.raises(RuntimeError):
        ex.export(run_dir, out)
    assert json.loads((out / "metrics.json").read_text())["sha256"] == m["sha256"]  # the previous export, whole
    monkeypatch.undo()
    fake_other = json.loads((out / "metrics.json").read_text()) | {"run_dir": str(tmp_path / "another_run")}
    (out / "metrics.json").write_text(json.dumps(fake_other))
    with pytest.raises(FileExistsError, match="another run"):
        ex.export(run_dir, out)
    (out / "README.md").write_text("how this release was made")  # a file the export does not write
    assert ex.export(run_dir, out, force=True)["run_dir"] == str(Path(run_dir).resolve())
    assert (out / "README.md").read_text() == "how this release was made"  # kept across the replacement


def test_prune_and_fine_tune_trials_in_a_sweep(ray_local, tiny_teacher, small_split, tmp_path):
    """Pruning trials (the source, importance and steps in the trial) run beside a designed student in one
    sweep; a pruned winner exports like any other and the report says what was pruned."""
    import copy

    from orchestrator.release.export import export
    from orchestrator.sweep.driver import run_sweep
    from trainables.augment import ViewSpec
    from trainables.config import TrainConfig
    from trainables.train import TrialData, train_student

    data = TrialData(
        small_split.train_x, small_split.train_y, small_split.val_x, small_split.val_y, ViewSpec(1, True), "none"
    )
    states = []
    train_student(
        TrainConfig(student="res3", student_kwargs={"widths": [12, 24, 48]}, loss="ce", epochs=1, batch_size=64),
        data,
        report=lambda m, s: states.append(copy.deepcopy(s)),
    )
    src = tmp_path / "wide" / "student.pt"
    src.parent.mkdir()
    torch.save(states[-1], src)
    cfg = smoke_config(
        tmp_path,
        "t_prune",
        {
            "teacher.mode": "clean",
            "data.train_limit": 384,
            "data.val_limit": 128,
            "train.epochs": 2,
            "sweep.grace_period": 2,
            "search_space": {},
            "train.student": "resdw_w24_d111",
            "trials": [
                {"prune_from": str(src), "prune_to": 25000, "prune_importance": "magnitude", "prune_steps": 8},
                {"prune_from": str(src), "prune_to": 25000, "prune_importance": "taylor", "prune_steps": 8},
                {"lr": 1.0e-6},
            ],
        },
    )
    assert cfg.students() == ["resdw_w24_d111"]  # only the designed student is budget-checked
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    table = pd.read_csv(run_dir / "results.csv")
    assert len(table) == 3 and set(table["status"]) == {"finished"}
    pruned = table[table["prune_from"].notna()]
    assert len(pruned) == 2 and (pruned["params"] <= 25_000).all()
    assert set(pruned["prune_importance"]) == {"magnitude", "taylor"}
    m = export(run_dir, tmp_path / "out")
    assert m["student"] == "pruned" and m["params"] <= 25_000 and m["pruned"]["params_before"] > 25_000
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**Pruning.** 2 trial(s)" in md and "wide/student.pt" in md and f"to {m['params']:,} parameters" in md


def test_trials_whose_worker_dies_are_listed_as_failed(ray_local, tiny_teacher, tmp_path, monkeypatch):
    """A trial whose process is killed by a signal (here SIGSEGV before its first report, SIGABRT after it, as
    oneDNN's crashes did) appears in results.csv, `kdsweep results` and the report as failed, with the signal,
    beside the trial that finished."""
    from orchestrator.release.export import export
    from orchestrator.release.results import table as results_table
    from orchestrator.sweep.driver import run_sweep
    from trainables import tune_trainable

    def dying(config, data, base, threads, use_gpu, resumes=None):
        # pickled by value into the worker, which has the real one
        import signal

        from ray import tune as rt

        import trainables.tune_trainable as tt

        tt.tune = rt
        lr = config["_variant"]["lr"]
        real_train = tt.train_student
        tt.train_student = real_train
        if lr == 0.02:  # dies inside the training call, as in a native kernel
            tt.train_student = lambda *a, **k: signal.raise_signal(signal.SIGSEGV)
        if lr == 0.03:

            def report_then_abort(metrics, checkpoint=None):
                rt.report(metrics, checkpoint=checkpoint)
                signal.raise_signal(signal.SIGABRT)

            from types import SimpleNamespace

            tt.tune = SimpleNamespace(
                report=report_then_abort,
                Checkpoint=rt.Checkpoint,
                get_checkpoint=rt.get_checkpoint,
                get_context=rt.get_context,
            )
        return tt.distill_trainable(config, data, base, threads, use_gpu, resumes)

    monkeypatch.setattr(tune_trainable, "distill_trainable", dying)
    cfg = smoke_config(
        tmp_path,
        "t_dead",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 64,
            "train.epochs": 2,
            "sweep.grace_period": 2,
            "sweep.max_failures": 0,
            "search_space": {},
            "train.student": "resdw_w24_d111",
            "trials": [{"lr": 0.01}, {"lr": 0.02}, {"lr": 0.03}],
        },
    )
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    csv_table = pd.read_csv(run_dir / "results.csv")
    assert sorted(csv_table["lr"]) == [0.01, 0.02, 0.03]
    status = dict(zip(csv_table["lr"], csv_table["status"]))
    assert status[0.01] == "finished"
    assert status[0.02].startswith("failed") and "SIGSEGV" in status[0.02], status
    assert status[0.03].startswith("failed") and "SIGABRT" in status[0.03], status
    assert json.loads((run_dir / "kdsweep_meta.json").read_text())["errors"] == 2
    cli_status = dict(zip(results_table(run_dir)["lr"], results_table(run_dir)["status"]))
    assert cli_status == status
    export(run_dir, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "SIGSEGV" in md and "SIGABRT" in md and "2 failed" in md


def test_a_search_in_chunks_goes_on_from_its_ledger(said, ray_local, tiny_teacher, tmp_path):
    """sweep.ledger: the candidates are drawn up front and each one's curve is kept in a small file. A second
    chunk on a machine without the run directory, two candidates cut off mid-run (no end line, a torn last
    line), trains only those two: one from the checkpoint the ledger kept, one (none kept) from its start;
    the others' records are untouched; the rungs judge the two against every recorded candidate; the final
    stage takes the best of all six. Another search's config meeting the ledger is refused in one line."""
    import shutil

    from orchestrator.release.export import export
    from orchestrator.release.results import trials
    from orchestrator.run.ledger import Ledger
    from orchestrator.sweep.candidates import open_ledger
    from orchestrator.sweep.driver import run_sweep

    ledger_dir = tmp_path / "ledger"
    cfg = smoke_config(
        tmp_path,
        "t_ledger",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 128,
            "train.epochs": 4,
            "train.student": "arch",
            "train.student_kwargs": {"block": "basic"},
            "search_space": {
                "student_kwargs.depths": {"choice": [[1, 1, 1], [1, 1, 2]]},
                "lr": {"loguniform": [0.01, 0.2]},
            },
            "sweep.num_samples": 6,
            "sweep.grace_period": 1,
            "sweep.reduction_factor": 2,
            "sweep.ledger": str(ledger_dir),
            "final.epochs": 1,
        },
    )
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    ledger, cands = open_ledger(cfg)
    entries = ledger.entries(cands)
    assert len(entries) == 6 and all(e.end for e in entries)
    assert {len(e.curve) for e in entries if e.end == "finished"} == {4}
    assert all("machine" in e.rows[0] and e.rows[0]["macs"] > 0 for e in entries)  # what its speed was measured on
    assert all((e.correct is not None) == (e.end == "finished") for e in entries)  # for the paired winner
    cut = [e for e in entries if e.end.startswith("stopped at epoch")]
    assert cut and all(e.end == f"stopped at epoch {len(e.curve)}" for e in cut)  # ASHA cut, and the ledger says so
    ran = [t["epochs_run"] for t in trials(run_dir) if t["stage"] == "search"]
    assert sorted(ran) == sorted(len(e.curve) for e in entries)  # the ledger holds what the trials ran

    # the next chunk, elsewhere: no run directory; two candidates were training when the last session ended
    (tmp_path / "meta1.json").write_text((run_dir / "kdsweep_meta.json").read_text())
    shutil.rmtree(run_dir)
    redo = [e.index for e in entries if e.end == "finished"][:1] + [cut[0].index]
    kept = {p.name: p.read_bytes() for p in ledger_dir.glob("c*.jsonl") if int(p.stem[1:]) not in redo}
    for i in redo:
        p = ledger_dir / f"c{i:03d}.jsonl"
        first = p.read_text().splitlines()[0]
        p.write_text(first + "\n" + '{"epoch": 2, "val_ac')  # one epoch recorded, the next torn mid-write
    assert [e.end for e in Ledger(ledger_dir).entries(cands) if e.index in redo] == [None, None]
    assert not list(ledger_dir.glob("*.pt"))  # every candidate ended: no checkpoint left behind
    # the first of the two left the checkpoint of its first epoch in the ledger (what LedgerCheckpoints keeps)
    import torch

    from orchestrator.sweep.prepare import prepare_data
    from trainables.train import train_student

    class Cut(Exception):
        pass

    def first_epoch(metrics, state):
        Ledger(ledger_dir).keep_state(redo[0], lambda tmp: torch.save(state, tmp))
        raise Cut

    data, _ = prepare_data(cfg, str(tiny_teacher), device="cpu")
    with pytest.raises(Cut):
        train_student(cfg.trial_config(cands[redo[0]]), data, report=first_epoch)
    first_plan = json.loads((tmp_path / "meta1.json").read_text())["plan"]
    said.clear()
    run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
    assert any("4 of 6 candidates ended, 2 left to train" in m for m in said)
    going_on = f"search: from the checkpoints the ledger kept, these go on: c{redo[0]:03d} after epoch 1"
    assert any(going_on in m for m in said)
    firsts = sorted(t["history"][0]["epoch"] for t in trials(run_dir) if t["stage"] == "search")
    assert firsts == [1, 2]  # one went on from its kept checkpoint, the other (none kept) from its start
    assert not list(ledger_dir.glob("*.pt"))  # the candidates' and the final stage's: all ended
    plan = json.loads((run_dir / "kdsweep_meta.json").read_text())["plan"]  # this chunk's two, not all six
    assert plan["search_trial_epochs"] == pytest.approx(first_plan["search_trial_epochs"] / 3)
    again = Ledger(ledger_dir).entries(cands)
    assert all(e.end for e in again)
    assert {p.name: p.read_bytes() for p in ledger_dir.glob("c*.jsonl") if int(p.stem[1:]) not in redo} == kept
    retrained = pd.read_csv(run_dir / "results.csv")
    assert len(retrained[retrained.stage == "search"]) == 2  # only the two cut off mid-run
    for i in redo:  # trained again from epoch 1: the file holds one curve, not the old start and the new
        assert [r["epoch"] for r in again[i].rows] == list(range(1, len(again[i].rows) + 1))
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    best = max(again, key=lambda e: e.best)
    assert meta["final"]["winner"]["lr"] == best.variant["lr"]  # the best of all six, not of this chunk
    export(run_dir, tmp_path / "out")  # the report draws every chunk's candidates from the ledger
    report = (tmp_path / "out" / "report.md").read_text()
    assert (
        "**Accuracy and cost.** candidates: 6 reported" in report and (tmp_path / "out" / "search_front.png").is_file()
    )

    other = dataclasses.replace(cfg, search_space={"lr": {"loguniform": [0.01, 0.2]}})
    with pytest.raises(UserError, match="is the ledger of another search"):
        open_ledger(other)
