"""`kdsweep train` (no Ray) and what the GPU release needs: a teacher at 56 px, teacher erasing/bf16,
the local run layout that export/results/report read, resume, and a run without Ray installed."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.config import Preprocess, SweepConfig, from_dict
from tests.conftest import ROOT
from trainables.augment import to_input


def test_to_input_resizes_for_a_teacher():
    x = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    x[1, :14] = 0
    out = to_input(x, 0.5, 0.5, 3, 56)
    assert out.shape == (2, 3, 56, 56)
    assert torch.allclose(out[0], torch.ones(3, 56, 56))  # a constant image stays constant
    assert out[1, 0, :26].max() == -1 and out[1, 0, 30:].min() == 1  # the edge stays where it was
    assert to_input(x, 0.5, 0.5, 1).shape == (2, 1, 28, 28)  # no size: the images as they are


def test_preprocess_size_is_checked():
    with pytest.raises(ValueError, match="size"):
        Preprocess(size=20)
    assert Preprocess().size == 28


def test_cache_keys_of_28_px_teachers_are_unchanged():
    """`size` joined the preprocessing after caches were built: a 28-px teacher's key must not move."""
    import hashlib
    from dataclasses import asdict

    from orchestrator.teacher.cache import CACHE_VERSION, fingerprint
    from trainables.augment import ViewSpec

    x, y = np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64)
    pre, spec = Preprocess(), ViewSpec(1, True)
    old = dict(asdict(pre))
    old.pop("size")
    h = hashlib.sha256(
        json.dumps(
            dict(v=CACHE_VERSION, teacher="t", views=asdict(spec), pre=old, shape=[4, 28, 28]), sort_keys=True
        ).encode()
    )
    h.update(x.tobytes())
    h.update(y.tobytes())
    assert fingerprint("t", x, y, spec, pre) == h.hexdigest()[:24]
    assert fingerprint("t", x, y, spec, dataclasses.replace(pre, size=56)) != fingerprint("t", x, y, spec, pre)


def test_teacher_at_56_px_with_erasing_and_bf16_round_trips(tmp_path):
    """`kdsweep teacher train` with preprocess.size 56, erase and precision: the release records the size,
    load_teacher reads it back, and the teacher's logits are computed on the resized input."""
    from orchestrator.data import load_split
    from orchestrator.teacher.config import TeacherTrainConfig
    from orchestrator.teacher.model import load_teacher
    from orchestrator.teacher.train import history_path, train_local
    from trainables.infer import accuracy, predict_logits

    cfg = from_dict(
        TeacherTrainConfig,
        dict(
            arch="resnet10",
            data=dict(train_limit=256, val_limit=128),
            preprocess=dict(size=56),
            erase=0.5,
            precision="bf16",
            optim=dict(epochs=1, batch_size=64, lr=0.05),
        ),
    )
    out = train_local(cfg, tmp_path / "run", tmp_path / "t56.pt")
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["preprocess"]["size"] == 56 and side["recipe"]["erase"] == 0.5
    assert json.loads(history_path(out).read_text())[0]["epoch"] == 1
    model, info = load_teacher(out)
    assert info.preprocess.size == 56
    s = load_split(val_size=5000, seed=0, train_limit=8, val_limit=128)
    logits = predict_logits(model, s.val_x, info.preprocess)
    assert accuracy(logits, s.val_y) == pytest.approx(side["val_acc"])  # eval reproduces training's number
    at28 = predict_logits(model, s.val_x, dataclasses.replace(info.preprocess, size=28))
    assert not torch.allclose(logits, at28)  # the size is really applied


def _local_cfg(tmp_path, teacher, **train) -> SweepConfig:
    return from_dict(
        SweepConfig,
        dict(
            name="loc",
            data=dict(train_limit=256, val_limit=128),
            teacher=dict(checkpoint=str(teacher), mode="live", batch_size=128),
            augment=dict(shift=1, flip=True),
            train=dict(student="resdw_w24_d111", loss="kd", epochs=2, batch_size=64, lr=0.05, **train),
            trials=[dict(loss="ce"), dict(loss="kd", temperature=2.0)],
            sweep=dict(storage=str(tmp_path / "runs"), cpus_per_trial=1),
        ),
    )


@pytest.mark.slow
def _interrupt_after_one_epoch(monkeypatch, local):
    """A killed process: the next trial reports its first epoch, then the run stops (KeyboardInterrupt).
    Returns the real train_student, to put back."""
    real = local.train_student

    def interrupted(c, data, report=None, resume=None, device="cpu"):
        def once(m, s):
            report(m, s)
            raise KeyboardInterrupt

        return real(c, data, report=once, resume=resume, device=device)

    monkeypatch.setattr(local, "train_student", interrupted)
    return real


def test_local_run_trains_each_trial_resumes_and_exports(said, tmp_path, tiny_teacher, monkeypatch):
    from orchestrator.cli import main
    from orchestrator.release.export import export
    from orchestrator.release.results import trials
    from orchestrator.run.layout import META_FILE
    from orchestrator.sweep import local

    cfg = _local_cfg(tmp_path, tiny_teacher)
    run = tmp_path / "runs" / "loc"
    # trial 1 alone, interrupted after its first epoch (a killed process): the run is not finished
    real = _interrupt_after_one_epoch(monkeypatch, local)
    with pytest.raises(KeyboardInterrupt):
        local.run_local(cfg, only=[1], device="cpu")
    monkeypatch.setattr(local, "train_student", real)
    [t1] = [t for t in trials(run) if t["trial"] == "local_01"]
    assert [h["epoch"] for h in t1["history"]] == [1] and t1["status"] == "running or interrupted"
    # the same command resumes it at epoch 2; trial 0 is still to run, so the run is not finished
    said.clear()
    local.run_local(cfg, only=[1], device="cpu")
    assert any("resuming after epoch 1" in m for m in said)
    assert not (run / META_FILE).is_file()
    # the other process's trial ends the run: meta, results table, both trials finished
    local.run_local(cfg, only=[0], device="cpu")
    meta = json.loads((run / META_FILE).read_text())
    assert meta["teacher"]["mode"] == "live" and meta["teacher_forwards"] == 2 * 256  # the KD trial's 2 epochs
    assert "no Ray" in meta["trained_with"] and (run / "results.csv").is_file()
    ts = {t["trial"]: t for t in trials(run)}
    assert ts["local_01"]["config"]["temperature"] == 2.0 and ts["local_00"]["config"]["loss"] == "ce"
    assert all(t["status"] == "finished" and [h["epoch"] for h in t["history"]] == [1, 2] for t in ts.values())
    # again: nothing is trained; export selects on validation over both trials
    said.clear()
    local.run_local(cfg, device="cpu")
    assert any("already finished" in m for m in said)
    m = export(run, tmp_path / "out")
    best = max(ts.values(), key=lambda t: t["best_val_acc"])
    assert m["val_acc"] == pytest.approx(best["best_val_acc"]) and 0 <= m["test_acc"] <= 1
    # --trial: one named trial's best checkpoint instead of the run's; a name that is not one trial is refused
    m0 = export(run, tmp_path / "out_00", trial="local_00")
    assert m0["val_acc"] == pytest.approx(ts["local_00"]["best_val_acc"]) and "local_00" in m0["trial_checkpoint"]
    assert m0["exported_trial"] == "local_00" and m["exported_trial"] is None
    # --tta auto: every view set measured on the run's validation split, the best shipped and recorded
    argv = ["export", "--run", str(run), "--out", str(tmp_path / "out_auto"), "--trial", "local_00", "--tta", "auto"]
    assert main(argv) == 0  # through the CLI: the export records the command that made it
    ma = json.loads((tmp_path / "out_auto" / "metrics.json").read_text())
    assert ma["command"] == "kdsweep " + " ".join(argv) and m["command"] is None  # None: called as a library
    assert set(ma["val_acc_by_tta"]) == {"none", "flip", "flip_shift"}
    assert ma["val_acc"] == max(ma["val_acc_by_tta"].values()) == ma["val_acc_by_tta"][ma["tta"]]
    assert ma["val_acc_by_tta"]["none"] == pytest.approx(m0["val_acc_plain"], abs=1e-4)  # as training measured
    assert "Named at export (`--trial local_00`)" in (tmp_path / "out_00" / "report.md").read_text()
    with pytest.raises(ValueError, match=r"'local_0' matches 2 trials .* its trials: local_00_loss=ce, local_01"):
        export(run, tmp_path / "out_x", trial="local_0")
    report = (tmp_path / "out" / "report.md").read_text()
    assert "trained to its last epoch without Ray" in report and "Ray Tune trials" not in report
    assert "inside every distillation trial" in report  # live mode: the teacher did run in the trials


def test_local_run_refuses_what_it_cannot_do(tmp_path, tiny_teacher):
    from orchestrator.sweep import local

    cfg = _local_cfg(tmp_path, tiny_teacher)
    with pytest.raises(ValueError, match="pass it without --trial"):
        local.run_local(cfg, only=[0], force=True, device="cpu")
    with pytest.raises(ValueError, match="trial 5 does not exist"):
        local.run_local(cfg, only=[5], device="cpu")
    searched = dataclasses.replace(cfg, search_space={"lr": {"choice": [0.1, 0.2]}})
    with pytest.raises(ValueError, match="search_space needs `kdsweep sweep`"):
        local.run_local(searched, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no GPU"):
            local.run_local(cfg, device="cuda")


@pytest.mark.slow
def test_kdsweep_train_runs_without_ray_installed(tmp_path, tiny_teacher):
    """The GPU machine has no Ray: the CLI's train and teacher-train paths must never import it."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            dict(
                name="noray",
                data=dict(train_limit=128, val_limit=64),
                teacher=dict(checkpoint=str(tiny_teacher), mode="live"),
                augment=dict(shift=1, flip=False),
                train=dict(student="resdw_w24_d111", loss="kd", epochs=1, batch_size=64),
                trials=[dict(loss="kd"), dict(loss="ce")],
                sweep=dict(storage=str(tmp_path / "runs")),
            )
        )
    )
    block = tmp_path / "block"
    (block / "ray").mkdir(parents=True)
    (block / "ray" / "__init__.py").write_text("raise ImportError('ray is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{ROOT}"}
    for k in (0, 1):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "train",
                "--config",
                str(cfg),
                "--trial",
                str(k),
                "--device",
                "cpu",
                "--threads",
                "1",
                "--no-export",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "runs" / "noray" / "kdsweep_meta.json").is_file()
    t = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "teacher",
            "train",
            "--no-ray",
            "--config",
            str(ROOT / "experiments" / "teacher_x56" / "config.yaml"),
            "--set",
            "arch=resnet10",
            "--set",
            "data.train_limit=128",
            "--set",
            "data.val_limit=64",
            "--set",
            "optim.epochs=1",
            "--set",
            "optim.batch_size=64",
            "--set",
            "use_gpu=false",
            "--run-dir",
            str(tmp_path / "trun"),
            "--out",
            str(tmp_path / "t.pt"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert t.returncode == 0, t.stderr[-2000:]
    assert json.loads((tmp_path / "t.json").read_text())["preprocess"]["size"] == 56


def test_kdsweep_cache_builds_what_a_sweep_then_hits(tmp_path, tiny_teacher, capsys):
    """`kdsweep cache` builds the config's cache ahead (e.g. on a GPU); the run after it is a cache hit."""
    from orchestrator.cli import main
    from orchestrator.config import load_sweep_config
    from orchestrator.sweep.prepare import prepare_data

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            dict(
                name="c",
                data=dict(train_limit=96, val_limit=32),
                teacher=dict(checkpoint=str(tiny_teacher), mode="views", cache_dir=str(tmp_path / "cache")),
                augment=dict(shift=1, flip=True),
                train=dict(student="resdw_w24_d111", loss="kd", epochs=1),
            )
        )
    )
    assert main(["cache", "--config", str(cfg), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "96 images x 18 views, built in" in out and "1,728 teacher forwards now" in out
    data, facts = prepare_data(load_sweep_config(cfg))
    assert facts.cache["hit"] and facts.teacher_forwards == 0 and data.teacher_logits.shape == (96, 18, 10)
    live = tmp_path / "live.yaml"
    live.write_text(cfg.read_text().replace('"views"', '"live"'))
    assert main(["cache", "--config", str(live)]) == 2
    assert "nothing to cache" in capsys.readouterr().err


def test_teacher_precision_bf16_has_its_own_cache_and_close_logits(tmp_path, tiny_teacher):
    """teacher.precision bf16: the cache's logits come from bf16 forwards under their own key (fp32 caches keep
    theirs), close to the fp32 ones; auto resolves to what this CPU computes natively."""
    from orchestrator.sweep.prepare import prepare_data
    from trainables.engine import resolve_precision

    base = dict(
        name="tp",
        data=dict(train_limit=64, val_limit=32),
        train=dict(loss="kd"),
        teacher=dict(checkpoint=str(tiny_teacher), mode="clean", cache_dir=str(tmp_path / "c")),
    )
    d32, m32 = prepare_data(from_dict(SweepConfig, base))
    base["teacher"]["precision"] = "bf16"
    d16, m16 = prepare_data(from_dict(SweepConfig, base))
    assert m32.teacher.precision == "fp32" and m16.teacher.precision == "bf16"
    assert m16.cache["key"] != m32.cache["key"] and m16.teacher_forwards == 64  # built, not reused
    diff = abs(d16.teacher_logits.astype("float32") - d32.teacher_logits.astype("float32"))
    assert 0 < diff.max() < 0.25 * abs(d32.teacher_logits.astype("float32")).max()
    base["teacher"]["precision"] = "auto"
    _, ma = prepare_data(from_dict(SweepConfig, base))
    assert ma.teacher.precision == resolve_precision("auto", "cpu") and ma.teacher_forwards == 0


def test_the_teacher_runs_in_the_layout_faster_here_with_the_same_logits(tmp_path, tiny_teacher, said):
    """teacher.layout auto: a few validation batches in each layout, in turn, the faster one taken, said and
    recorded; the cache's logits do not depend on the layout (its key has none): a forced layout reuses it,
    and forwards in either layout agree."""
    import torch

    from orchestrator.sweep.prepare import prepare_data, probe_teacher_layout
    from orchestrator.teacher.model import load_teacher
    from trainables.infer import predict_logits
    from trainables.layout import LAYOUTS, model_layout

    base = dict(
        name="tl",
        data=dict(train_limit=64, val_limit=32),
        train=dict(loss="kd"),
        teacher=dict(checkpoint=str(tiny_teacher), mode="clean", cache_dir=str(tmp_path / "c")),
    )
    _, facts = prepare_data(from_dict(SweepConfig, base))
    t = facts.record()["teacher"]  # as the run's meta record keeps it
    assert t["layout"] in LAYOUTS and set(t["layout_img_s"]) == set(LAYOUTS) and min(t["layout_img_s"].values()) > 0
    assert any(m.startswith(f"teacher layout: {t['layout']}, the faster here") for m in said)
    other = next(k for k in LAYOUTS if k != t["layout"])
    base["teacher"]["layout"] = other
    _, forced = prepare_data(from_dict(SweepConfig, base))
    assert "layout" not in forced.record()["teacher"] and forced.teacher_forwards == 0  # the same cache
    model, info = load_teacher(tiny_teacher)
    x = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    rates = probe_teacher_layout(model, x, info.preprocess, 16, "cpu", images=32)
    assert set(rates) == set(LAYOUTS) and model_layout(model) == torch.channels_last  # left as loaded
    last = predict_logits(model, x, info.preprocess, 16)
    model.to(memory_format=torch.contiguous_format)
    assert model_layout(model) == torch.contiguous_format
    assert torch.allclose(predict_logits(model, x, info.preprocess, 16), last, atol=1e-4)


def test_the_run_names_a_teacher_in_the_project_by_its_project_path(tmp_path, tiny_teacher, monkeypatch):
    """The run's meta (and so the report committed with a release) names a teacher inside the project by its
    path there, not by the machine's absolute path; one outside keeps its absolute path."""
    import shutil

    from orchestrator.sweep.prepare import prepare_data

    (tmp_path / "models" / "teacher").mkdir(parents=True)
    for f in (tiny_teacher, tiny_teacher.with_suffix(".json")):
        shutil.copy(f, tmp_path / "models" / "teacher" / f.name)
    monkeypatch.chdir(tmp_path)
    base = dict(
        name="tp",
        data=dict(train_limit=64, val_limit=32),
        train=dict(loss="kd"),
        teacher=dict(
            checkpoint=str(tmp_path / "models/teacher" / tiny_teacher.name), mode="clean", cache_dir=str(tmp_path / "c")
        ),
    )
    _, facts = prepare_data(from_dict(SweepConfig, base))
    assert facts.teacher.path == f"models/teacher/{tiny_teacher.name}"
    base["teacher"]["checkpoint"] = str(tiny_teacher)
    _, facts = prepare_data(from_dict(SweepConfig, base))
    assert facts.teacher.path == str(tiny_teacher)


@pytest.mark.slow
def test_a_run_written_by_an_earlier_kdsweep_resumes_and_exports(tmp_path, monkeypatch, said):
    """tests/data/legacy_run/ was written by an earlier kdsweep (its WRITTEN_BY names the commit), killed
    after epoch 1 of 2: today's code accepts its claim, resumes it at epoch 2, finishes and exports it."""
    import shutil

    from orchestrator.config import load_sweep_config
    from orchestrator.release.export import export
    from orchestrator.release.results import trials
    from orchestrator.run.rundir import Run
    from orchestrator.sweep import local

    data = ROOT / "tests" / "data"
    (tmp_path / "configs").mkdir()
    shutil.copy(data / "legacy_run.yaml", tmp_path / "configs" / "legacy_run.yaml")
    shutil.copytree(data / "legacy_run", tmp_path / "runs" / "legacy")
    monkeypatch.chdir(tmp_path)
    cfg = load_sweep_config("configs/legacy_run.yaml")
    run = Run.of(cfg)
    assert run.dir == tmp_path / "runs" / "legacy" and not run.finished
    local.run_local(cfg, device="cpu")
    assert any("resuming after epoch 1" in m for m in said) and run.finished
    [t] = trials(run.dir)
    assert [h["epoch"] for h in t["history"]] == [1, 2] and t["status"] == "finished"
    m = export(run.dir, tmp_path / "out")
    assert m["params"] == t["params"] and (tmp_path / "out" / "student.pt2").is_file()


def test_a_torn_checkpoint_starts_its_trial_over(said, tmp_path, tiny_teacher, monkeypatch):
    """A trial's last checkpoint cut short (a crash, a full disk): the next run cannot resume from it, says
    so, and trains the trial from its start to its end rather than failing on the same file every time."""
    import torch

    from orchestrator.release.results import trials
    from orchestrator.sweep import local
    from trainables.train import load_resume

    ok = tmp_path / "ok.pt"
    torch.save({"epoch": 3}, ok)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(ok.read_bytes()[:100])
    assert load_resume(ok) == {"epoch": 3}
    with pytest.warns(UserWarning, match="torn.pt: cannot be read whole .* the trial starts over"):
        assert load_resume(torn) is None

    cfg = _local_cfg(tmp_path, tiny_teacher)
    real = _interrupt_after_one_epoch(monkeypatch, local)
    with pytest.raises(KeyboardInterrupt):
        local.run_local(cfg, only=[1], device="cpu")
    monkeypatch.setattr(local, "train_student", real)
    [ckpt] = (tmp_path / "runs" / "loc").glob("final/local_01*/checkpoint_last/checkpoint.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # cut short
    said.clear()
    with pytest.warns(UserWarning, match="cannot be read whole"):
        local.run_local(cfg, only=[1], device="cpu")
    assert any("from scratch" in m for m in said)
    [t1] = [t for t in trials(tmp_path / "runs" / "loc") if t["trial"] == "local_01"]
    assert t1["epochs_run"] == t1["epochs"] and t1["status"] == "finished"


def test_kdsweep_train_reads_shorter_runs_off_a_wsd_run_and_says_what_each_ended_with(tmp_path):
    """A wsd run with cool-down branches through `kdsweep train`: `kdsweep results` says what each length
    ended with on validation and on training images (the fit gap), and each process's first row its machine."""
    from orchestrator.release.results import run_lines, trials
    from orchestrator.sweep import local

    cfg = from_dict(
        SweepConfig,
        dict(
            name="wsd",
            data=dict(train_limit=256, val_limit=128),
            teacher=dict(checkpoint=None),
            augment=dict(shift=1, flip=True),
            train=dict(
                student="resdw_w24_d111", loss="ce", epochs=8, batch_size=128, lr=0.05, schedule="wsd",
                warmup_frac=0.1, decay_frac=0.25, branches=[4, 6],
            ),
            sweep=dict(storage=str(tmp_path / "runs"), cpus_per_trial=1),
        ),
    )  # fmt: skip
    run = local.run_local(cfg, device="cpu")
    [t] = trials(run)
    assert [x["epochs"] for x in t["lengths"]] == [4, 6, 8] and all(0 <= x["train_acc"] <= 1 for x in t["lengths"])
    [line] = [x for x in run_lines(run) if x.startswith("lengths read off local_00")]
    assert "4 epochs val" in line and "; 8 epochs val" in line and "gap" in line
    first = json.loads((Path(t["dir"]) / "result.json").read_text().splitlines()[0])
    assert "machine" in json.loads(first["detail"])
    # a time budget that holds two epochs of four: the trial ends at two, finished, and a rerun trains nothing
    short = dataclasses.replace(
        cfg, name="budget", train=dataclasses.replace(cfg.train, time_budget_s=1e-3, min_epochs=2, branches=[])
    )
    run = local.run_local(short, device="cpu")
    [t] = trials(run)
    assert t["status"] == "finished" and t["epochs_run"] == t["epochs"] == 2
    assert (run / "kdsweep_meta.json").is_file() and local.run_local(short, device="cpu") == run
