"""The report as a person sees it: report.html opened in a real browser (Debian's headless chromium), and
each plot only where the run has what it shows. Synthetic run directories: no Ray, no training."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from orchestrator.config import load_sweep_config, to_dict
from orchestrator.release.plots import bar_names
from orchestrator.release.report import write_report
from orchestrator.run.layout import CONFIG_FILE
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _run(tmp: Path, variants: list[dict]) -> tuple[Path, dict]:
    """A finished-looking run: its claim, and one search trial per variant with a 3-epoch history."""
    cfg = load_sweep_config(ROOT / "configs" / "smoke.yaml")
    run = tmp / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(json.dumps(to_dict(cfg), default=str))
    for k, v in enumerate(variants):
        d = run / f"distill_trainable_abc_{k:05d}"
        d.mkdir()
        (d / "params.json").write_text(json.dumps({"_variant": v}))
        (d / "result.json").write_text(
            "".join(
                json.dumps(
                    dict(epoch=e, val_acc=0.80 + 0.03 * e + 0.01 * k, params=50_000 + 1000 * k, trial_id=f"abc_{k:05d}")
                )
                + "\n"
                for e in (1, 2, 3)
            )
        )
    metrics = dict(
        student=cfg.train.student,
        params=50_000,
        val_acc=0.92,
        test_acc=0.91,
        budget=100_000,
        config={**to_dict(cfg.train), **variants[0]},
        teacher_val_acc=0.93,
        machine="test",
    )
    return run, metrics


def _meta() -> dict:
    return {
        "name": "browser",
        "wall_s": 60.0,
        "teacher_forwards": 0,
        "teacher": {
            "arch": "resnet50",
            "params": 23_528_522,
            "val_acc": 0.93,
            "mode": "clean",
            "path": str(ROOT / "models" / "teacher" / "resnet50.pt"),
            "sha256": "ab" * 32,
        },
    }


def _plot_names(out: Path) -> set[str]:
    return {p.name for p in out.glob("*.png")}


def test_a_plot_appears_only_where_the_run_has_what_it_shows(tmp_path):
    """No control in the run: no distillation-against-control plot; with one, its bars read differently
    even where two trials share their loss settings and seed (they differ in the student)."""
    run, metrics = _run(tmp_path, [{"loss": "kd"}, {"loss": "kd", "student": "res3_w8_d111"}])
    out = tmp_path / "out"
    out.mkdir()
    write_report(run, out, metrics, _meta())
    assert _plot_names(out) == {"val_curves.png", "acc_vs_params.png"}
    page = (out / "report.html").read_text()
    assert page.count("<img ") == 2 and str(ROOT) not in page  # the teacher named relative to the project
    (tmp_path / "b").mkdir()
    run2, metrics2 = _run(tmp_path / "b", [{"loss": "kd"}, {"loss": "kd", "student": "res3_w8_d111"}, {"loss": "ce"}])
    out2 = tmp_path / "out2"
    out2.mkdir()
    write_report(run2, out2, metrics2, _meta())
    assert "kd_vs_control.png" in _plot_names(out2)
    from orchestrator.release.results import trials

    names = bar_names(trials(run2))
    assert len(set(names)) == len(names) == 3 and any("res3_w8_d111" in n for n in names)


def _with_ledger(run: Path, folder: Path) -> None:
    """Give the synthetic run a search ledger of four candidates (two finished, one cut, one dearer)."""
    from orchestrator.run.ledger import Ledger

    cfg = json.loads((run / CONFIG_FILE).read_text())
    cfg["sweep"]["ledger"] = str(folder)
    (run / CONFIG_FILE).write_text(json.dumps(cfg))
    cands = [{"student_kwargs.depths": [1, 1, k], "lr": 0.1} for k in (1, 2, 3, 4)]
    ledger = Ledger(folder)
    ledger.open({"x": 1}, cands)
    for i, (macs, curve, end) in enumerate(
        [(5e6, [0.90, 0.93], "finished"), (9e6, [0.90, 0.92], "finished"), (2e6, [0.5], "stopped at epoch 1"),
         (20e6, [0.91, 0.95], "finished")]
    ):  # fmt: skip
        for e, v in enumerate(curve, 1):
            ledger.epoch(i, dict(epoch=e, val_acc=v, params=90_000, macs=macs, images_per_s=3e4 / (macs / 1e6)))
        ledger.ended(i, end)


@pytest.mark.slow
@pytest.mark.parametrize("ledger", [False, True], ids=["trials", "search_front"])
def test_the_report_renders_in_a_real_browser(tmp_path, ledger):
    """Headless chromium opens report.html and draws it: a screenshot of the window's size, mostly page
    (not blank), with the plots' own colours in it (the embedded PNGs decoded and drawn); a search kept in a
    ledger adds its accuracy/cost front, drawn too."""
    from PIL import Image

    assert CHROMIUM, "this test needs a browser: apt-get install -y chromium (make test installs it)"
    run, metrics = _run(tmp_path, [{"loss": "kd"}, {"loss": "ce"}])
    if ledger:
        _with_ledger(run, tmp_path / "ledger")
    out = tmp_path / "out"
    out.mkdir()
    write_report(run, out, metrics, _meta())
    page = (out / "report.html").read_text()
    assert ('alt="search_front"' in page) == ledger and (
        "**Accuracy and cost.**" in (out / "report.md").read_text()
    ) == ledger
    shot = tmp_path / "shot.png"
    p = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1000,2600",
            f"--screenshot={shot}",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1000, 2600)
    px = np.asarray(img).astype(int)
    ink = float((px.sum(axis=2) < 600).mean())  # anything that is not white paper
    blue = int((np.abs(px - (31, 119, 180)) < 30).all(axis=2).sum())
    assert 0.01 < ink < 0.9, ink  # a drawn page, neither blank nor black
    assert blue > 500, blue  # matplotlib's C0: the plots were drawn


def test_the_search_is_accounted_for(tmp_path, capsys):
    """A run with a search: the anytime plot, the cuts per epoch, the trial-epochs and core-hours and the rule
    in the method text and in `kdsweep results`; the KD-against-control bars set search trials side by side
    (one length), not a long final trial beside a short control."""
    import argparse

    from orchestrator.commands import results
    from orchestrator.release.results import search_account, trials
    from orchestrator.run.layout import FINAL_BASE_FILE, FINAL_DIR, META_FILE

    run, metrics = _run(
        tmp_path, [{"loss": "kd"}, {"loss": "kd", "lr": 0.2}, {"loss": "kd", "lr": 0.3}, {"loss": "ce"}]
    )
    for k, d in enumerate(sorted(run.glob("distill_trainable_*"))):  # each trial's epochs, interleaved in time
        rows = [json.loads(x) for x in (d / "result.json").read_text().splitlines()]
        rows = rows[:1] if k == 1 else rows[:2]  # trial 1 cut after its first epoch
        (d / "result.json").write_text(
            "".join(
                json.dumps({**r, "timestamp": 100 * r["epoch"] + k, "elapsed_s": 30.0 * r["epoch"], "threads": 1})
                + "\n"
                for r in rows
            )
        )
    final = run / FINAL_DIR / "distill_trainable_fin_00000"
    final.mkdir(parents=True)
    (run / FINAL_DIR / FINAL_BASE_FILE).write_text(json.dumps({**metrics["config"], "epochs": 40}))
    (final / "params.json").write_text(json.dumps({"seed": 0}))
    (final / "result.json").write_text(json.dumps(dict(epoch=40, val_acc=0.95, trial_id="fin_00000")) + "\n")
    said = {
        "searches": True,
        "searcher": "random",
        "grace": 1,
        "rungs": [1],
        "rule": "grace period 1 of 2 epochs: measured",
        "statement": "search: 4 candidates",
    }
    meta = {**_meta(), "search": said}
    (run / META_FILE).write_text(json.dumps(meta))
    acc = search_account(trials(run), meta)
    assert acc["trials"] == 4 and acc["trial_epochs"] == 7 and acc["cut_at"] == {1: 1} and acc["finished"] == 3
    assert acc["core_h"] == pytest.approx(7 * 30 / 3600, abs=1e-4)
    assert acc["anytime"][0]["trial_epochs"] == 1 and acc["anytime"][-1]["best_val_acc"] == pytest.approx(0.89)
    # would the cut trial have won: its gap to the winner at its cut, against a recorded reversal rate
    chk = search_account(trials(run), meta, reversal=[dict(epoch=1, frac=0.5, gap=0.0, pairs=4, reversed=1)])
    chk = chk["cut_check"]
    assert chk["cut"] == chk["compared"] == chk["judged"] == 1 and chk["expected"] == 0.25
    assert chk["rows"][0]["epoch"] == 1 and chk["rows"][0]["pairs"] == 4
    out = tmp_path / "out"
    out.mkdir()
    write_report(run, out, metrics, meta)
    assert {"search_anytime.png", "kd_vs_control.png"} <= _plot_names(out)
    text = (out / "report.md").read_text()
    assert "1 stopped early (1 at epoch 1)" in text and "7 trial-epochs, 0.06 core-hours in all" in text
    assert "Why the first rung is where it is: grace period 1 of 2 epochs: measured." in text
    assert "Would a cut trial have won? " in text
    from orchestrator.release.plots import compared

    assert [t["stage"] for t in compared(trials(run))] == ["search"] * 4  # not the 40-epoch final beside them
    assert results(argparse.Namespace(run=str(run))) == 0  # `kdsweep results` (main() would keep capsys' stream)
    shown = capsys.readouterr().out
    assert (
        "search: 4 trials by random, 7 trial-epochs, 0.06 core-hours; ASHA cut 1 (1 at epoch 1), 3 ran to the end"
    ) in shown
    assert "would a cut trial have won: 1 cut, " in shown and "times in 1 such cuts" in shown  # the committed table


def test_a_trial_resumed_on_another_cpu_shows_both_precisions(tmp_path):
    from orchestrator.release.results import table

    run, _ = _run(tmp_path, [{"loss": "kd"}, {"loss": "ce"}])
    d = sorted(run.glob("distill_trainable_*"))[0]
    rows = [json.loads(x) for x in (d / "result.json").read_text().splitlines()]
    (d / "result.json").write_text(
        "".join(json.dumps({**r, "precision": "bf16" if r["epoch"] < 3 else "fp32"}) + "\n" for r in rows)
    )
    assert sorted(table(run)["precision"]) == ["", "bf16+fp32"]


def test_a_run_under_way_is_accounted_with_its_configs_searcher(tmp_path, capsys):
    """Before the meta record exists (a search under way), `kdsweep results` names the searcher the run's
    config asks for, not a default."""
    import argparse

    from orchestrator.commands import results
    from orchestrator.run.layout import CONFIG_FILE

    run, _ = _run(tmp_path, [{"loss": "kd"}, {"loss": "kd", "lr": 0.2}, {"loss": "ce"}])
    cfg = json.loads((run / CONFIG_FILE).read_text())
    cfg["sweep"]["searcher"] = "optuna"
    (run / CONFIG_FILE).write_text(json.dumps(cfg))
    assert results(argparse.Namespace(run=str(run))) == 0
    assert "search: 3 trials by optuna" in capsys.readouterr().out


def test_the_report_names_files_not_machines_and_compresses_against_the_resnet50(tmp_path):
    """A student taught by an assistant on another machine: the report names the teacher's file, not that
    machine's path, and gives the compression against the course's ResNet-50 beside the assistant's."""
    run, metrics = _run(tmp_path, [{"loss": "kd"}])
    meta = _meta()
    meta["teacher"].update(arch="cifar_resnet20", params=272_474, path="/elsewhere/worktree/models/teacher/ta.pt")
    out = tmp_path / "out"
    out.mkdir()
    write_report(run, out, metrics, meta)
    md = (out / "report.md").read_text()
    assert "/elsewhere" not in md and "from `ta.pt`" in md
    assert "| compression (teacher / student parameters) | 5x |" in md
    assert (
        "| compression against the course's ResNet-50 | 471x (23,528,522 / 50,000 parameters); the student's "
        "teacher was a cifar_resnet20, not the ResNet-50 |" in md
    )
