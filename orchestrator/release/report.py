"""The report a user hands in: `report.md` and a self-contained `report.html` (plots embedded), written
from the run directory and the export (`kdsweep report --run runs/<name>`, also run by export).

Everything in the method section is read from the run (its config, its trials, its teacher), so the
text says what this run did: a no-teacher winner is described as such, a clean-mode teacher as such.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from orchestrator.data import CLASSES, load_split
from orchestrator.release import front as front_mod
from orchestrator.release import results as results_mod
from orchestrator.run.io import project_relative
from trainables.losses import LOSSES, NEEDS_TEACHER
from trainables.train import BN_IMAGES

MODES = {
    "views": "its logits were computed once for every (training image, augmentation view) pair and each student "
    "step replays a view with the teacher's exact logits for it (consistent teaching)",
    "clean": "its logits were computed once per clean training image; the student's shifted/flipped (and erased) "
    "views are taught with the clean image's logits",
    "live": "it ran on every student batch (the slow reference mode)",
}


# where a run that skips its control check points the reader instead (records, not this run's figures)
CONTROL_RECORDS = (
    "experiments/fast_recipe (2 epochs, the default's student: a tie within noise) and "
    "bench/results/kd_vs_control.json (6 epochs on 15,000 images, 3 seeds each: the default's KD recipe 0.876 "
    "on validation against the label-smoothed control's 0.872)"
)


def _is_kd(loss: str) -> bool:
    return loss in NEEDS_TEACHER


def _label(cfg: dict) -> str:
    loss = cfg.get("loss", "?")
    if loss in ("ce", "mse"):
        ls = cfg.get("label_smoothing") or 0
        return f"{loss}" + (f" ls{ls:g}" if ls else "")
    extra = f" b{cfg.get('beta'):g}" if loss == "dkd" else ""
    return f"{loss} T{cfg.get('temperature', 0):g} a{cfg.get('alpha', 0):g}{extra}"


# ---------------------------------------------------------------- plots

PLOT_FILES = frozenset(
    {
        "val_curves.png",
        "acc_vs_params.png",
        "kd_vs_control.png",
        "confusion_val.png",
        "search_anytime.png",
        "search_front.png",
    }
)


def _plots(
    ts: list[dict], metrics: dict, out: Path, confusion: np.ndarray | None, meta: dict | None = None
) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}

    fig, ax = plt.subplots(figsize=(7, 4))
    for t in ts:
        h = t["history"]
        if not h:
            continue
        ep, acc = [x["epoch"] for x in h], [x["val_acc"] for x in h]
        style = "-" if t["stage"] == "search" else "--"
        c = t["config"]
        (line,) = ax.plot(
            ep, acc, style, marker=".", label=f"{t['stage']}: {_label(c)} ({c.get('student')}, seed {c.get('seed')})"
        )
        if t["status"].startswith("stopped"):
            ax.plot(ep[-1], acc[-1], "x", color=line.get_color(), markersize=10)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch (x: stopped by ASHA)")
    accs = [x["val_acc"] for t in ts for x in t["history"]]
    if accs and max(accs) > 0.85:  # zoom on where the trials compete; the first epochs' low values stay cut off
        ax.set_ylim(max(min(accs), max(accs) - 0.08) - 0.002, max(accs) + 0.004)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    paths["curves"] = _save(fig, out / "val_curves.png")

    kd = [t for t in ts if _is_kd(t["config"].get("loss", ""))]
    control = [t for t in ts if not _is_kd(t["config"].get("loss", ""))]
    fig, ax = plt.subplots(figsize=(6, 4))
    sides = ((kd, "o", "C0", "with teacher (KD)"), (control, "s", "C3", "no teacher (control)"))
    for group, marker, color, label in sides:
        sized = [t for t in group if t["params"]]
        if sized:  # a legend entry only for what the run has
            ax.scatter(
                [t["params"] for t in sized],
                [t["best_val_acc"] for t in sized],
                marker=marker,
                c=color,
                alpha=0.7,
                label=label,
            )
    budget = metrics.get("budget", 100_000)
    ax.axvline(budget, color="k", ls=":", label=f"budget ({budget:,} params)")
    if metrics.get("teacher_val_acc"):
        ax.axhline(metrics["teacher_val_acc"], color="C2", ls="--", label="teacher val acc")
    ax.set(xlabel="parameters (torchinfo)", ylabel="best validation accuracy", title="Accuracy against size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    paths["params"] = _save(fig, out / "acc_vs_params.png")

    rows = compared(ts)
    if rows:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        names = _bar_names(rows)
        colors = ["C0" if _is_kd(t["config"].get("loss", "")) else "C3" for t in rows]
        ax.barh(range(len(rows)), [t["best_val_acc"] for t in rows], color=colors)
        ax.set_yticks(range(len(rows)), names, fontsize=7)
        ax.invert_yaxis()
        vals = [t["best_val_acc"] for t in rows if t["best_val_acc"] == t["best_val_acc"]]
        if vals:
            ax.set_xlim(max(min(vals) - 0.01, 0), min(max(vals) + 0.005, 1))
        if metrics.get("teacher_val_acc"):
            ax.axvline(metrics["teacher_val_acc"], color="C2", ls="--", label="teacher")
            ax.legend(fontsize=7)
        lengths = sorted({t["epochs"] for t in rows})
        ax.set(
            xlabel="best validation accuracy",
            title="Distillation (blue) against the no-teacher control (red), "
            + (f"{lengths[0]} epochs each" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]} epochs"),
        )
        ax.grid(alpha=0.3, axis="x")
        paths["kd_vs_control"] = _save(fig, out / "kd_vs_control.png")

    acc = results_mod.search_account(ts, meta)
    if acc["trials"] >= 3 and acc["anytime"]:  # a search, not a pair: what each trial-epoch bought
        fig, ax = plt.subplots(figsize=(6, 3.6))
        pts = acc["anytime"] + [dict(acc["anytime"][-1], trial_epochs=acc["trial_epochs"])]
        ax.step([p["trial_epochs"] for p in pts], [p["best_val_acc"] for p in pts], where="post")
        ax.set(
            xlabel=f"trial-epochs spent ({acc['core_h']:.2f} core-hours in all)",
            ylabel="best validation so far",
            title=f"The search's anytime curve ({acc['trials']} trials, {acc['searcher']}, ASHA)",
        )
        ax.grid(alpha=0.3)
        paths["anytime"] = _save(fig, out / "search_anytime.png")

    if confusion is not None:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.imshow(confusion, cmap="Blues")
        for i in range(10):
            for j in range(10):
                ax.text(
                    j,
                    i,
                    int(confusion[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black",
                )
        ax.set_xticks(range(10), CLASSES, rotation=60, fontsize=7, ha="right")
        ax.set_yticks(range(10), CLASSES, fontsize=7)
        ax.set(xlabel="predicted", ylabel="true", title="Exported student, validation split")
        paths["confusion"] = _save(fig, out / "confusion_val.png")
    return paths


def compared(ts: list[dict]) -> list[dict]:
    """The trials the distillation-against-control bars set side by side, like with like: the search's where
    it ran both sides (one length), else all of them; none where the run lacks a side. Best first."""

    def both(rows):
        return any(_is_kd(t["config"].get("loss", "")) for t in rows) and any(
            not _is_kd(t["config"].get("loss", "")) for t in rows
        )

    search = [t for t in ts if t["stage"] == "search"]
    rows = search if both(search) else ts if both(ts) else []
    return sorted(rows, key=lambda t: (t["stage"] != "search", -t["best_val_acc"]))


def _bar_names(rows: list[dict]) -> list[str]:
    """One label per trial that tells it from the others: stage, loss settings and seed, plus whatever else
    differs between the trials (the student, a learning rate), so no two bars read the same."""
    keys = [
        k
        for k in results_mod.varying_keys(rows)
        if k not in ("loss", "temperature", "alpha", "beta", "label_smoothing", "seed", "epochs")
    ]
    names = []
    for t in rows:
        c = t["config"]
        extra = "".join(f" {c.get(k)}" if k == "student" else f" {k}={c.get(k)}" for k in keys)
        names.append(f"{t['stage'][0]}: {_label(c)}{extra} s{c.get('seed')}")
    return [f"{n} ({t['trial']})" if names.count(n) > 1 else n for n, t in zip(names, rows)]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def val_confusion(model, run_cfg: dict) -> np.ndarray:
    """10x10 counts (true, predicted) of the exported model on the run's own validation split."""
    import torch

    d = run_cfg["data"]
    s = load_split(d.get("data_dir"), d["val_size"], d["split_seed"], d.get("train_limit"), d.get("val_limit"))
    with torch.no_grad():
        x = torch.as_tensor(s.val_x).float().div_(255).unsqueeze(1)
        pred = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)]).argmax(1).numpy()
    m = np.zeros((10, 10), dtype=np.int64)
    np.add.at(m, (s.val_y, pred), 1)
    return m


# ---------------------------------------------------------------- text


def method_text(ts: list[dict], metrics: dict, run_meta: dict, run_cfg: dict) -> list[str]:
    """Plain paragraphs generated from the run: what was compared, how, and what won."""
    win = metrics["config"]
    t = run_meta.get("teacher") or {}
    paras = []
    if t:
        forwards = run_meta.get("teacher_forwards", 0)
        if t.get("mode") == "live":
            how = (
                "inside every distillation trial, one forward per training image per epoch, on the view the student saw"
            )
        elif not forwards:
            how = "none: a cache hit, computed by an earlier run; no trial ran the teacher network"
        else:
            how = "once, then shared with the trials; no trial ran the teacher network"
        paras.append(
            f"**Teacher.** A {t.get('arch')} with {t.get('params', 0):,} parameters, {t.get('val_acc', 0):.2%} on the "
            f"validation split, from `{_named(t.get('path') or '')}` "
            f"(sha256 {str(t.get('sha256'))[:12]}…). Teacher mode "
            f"`{t.get('mode')}`: {MODES.get(t.get('mode'), '')}. This run made {forwards:,} teacher forward passes "
            f"over training images ({how})."
        )
        if win.get("mix", "none") != "none":
            paras.append(
                f"**Function matching.** The student trained on {win['mix']} images: each a mix of two training "
                f"images, lambda ~ Beta({win['mix_alpha']:g}, {win['mix_alpha']:g}) per image, and the teacher, "
                f"live, scored exactly that mixed image, its only target (alpha 1: no hard label), for "
                f'{win.get("epochs")} epochs (Beyer et al. 2022, "Knowledge distillation: A good teacher is patient '
                'and consistent").'
            )
        if t.get("ensemble"):
            names = ", ".join(f"{m['arch']} ({m['val_acc']:.2%}, `{Path(m['path']).name}`)" for m in t["ensemble"])
            paras.append(
                f"**Teacher ensemble.** The distillation target is the average of the teacher's logits and those of "
                f"{len(t['ensemble'])} more model(s) on the same view: {names}; the average scores "
                f"{t.get('ensemble_val_acc', 0):.2%} on the validation split. Each member's logits are cached like "
                f"the teacher's."
            )
    else:
        paras.append("**Teacher.** None: every loss in this run trains on the labels only.")
    a = run_cfg.get("augment", {})
    fam = metrics["student"]
    budget = metrics.get("budget", 100_000)
    paras.append(
        f"**Student.** `{fam}` {metrics.get('student_kwargs') or ''}: {metrics['params']:,} parameters "
        f"({metrics['params'] / budget:.1%} of the {budget:,} budget, counted by torchinfo)"
        + (f", {t['params'] / metrics['params']:.0f}x fewer than the teacher" if t.get("params") else "")
        + ". "
        + (
            "Its size is the budget's: the family's widths were fitted so that the count stays at or under it"
            if metrics["params"] >= 0.9 * budget
            else "It is well under the budget (a small variant)"
        )
        + " (`kdsweep students` lists every registered student with its count and measured training speed)."
    )
    loss = LOSSES.get(win["loss"])
    formula, paper = (loss.formula, loss.paper) if loss else (win["loss"], "")
    alpha = win.get("alpha", 0)
    formula = formula.format(
        alpha=f"{alpha:g}",
        one_minus_alpha=f"{1 - alpha:g}",
        beta=f"{win.get('beta', 0):g}",
        T=f"{win.get('temperature', 0):g}",
    )
    ls = win.get("label_smoothing") or 0
    paras.append(
        f"**Loss of the exported student.** `{win['loss']}` ({paper}): {formula}"
        + (f", CE_ls with label smoothing {ls:g}" if ls else ", CE_ls without label smoothing")
        + (
            f"; the teacher term's weight rose linearly from 0 over the first {win['kd_warmup']} epochs"
            if win.get("kd_warmup")
            else ""
        )
        + "."
    )
    paras.append(
        f"**Training.** {win['optimizer'].upper()}"
        f"{' (Nesterov, momentum ' + format(win['momentum'], 'g') + ')' if win['optimizer'] == 'sgd' else ''}, "
        f"peak learning rate {win['lr']:g}, {win['schedule']} schedule, weight decay {win['weight_decay']:g}, "
        f"batch {win['batch_size']}, {win['epochs']} epochs, precision {metrics.get('train_precision')}. "
        f"Augmentation: random shift up to {a.get('shift')} px"
        + (", horizontal flip" if a.get("flip") else "")
        + (
            f", random erasing with probability {win['erase']:g} "
            "(after the teacher's view: the teacher scored the uncut image)"
            if win.get("erase")
            else ""
        )
        + "."
        + (
            " Evaluation and the export use an exponential moving average of the weights "
            f"(decay {win['ema']:g} per step"
            + ("; BN statistics averaged too" if win.get("ema_bn") == "average" else "")
            + (
                f"; BN statistics recomputed for the averaged weights on {BN_IMAGES:,} training images before each "
                "evaluation"
                if win.get("ema_bn") == "recompute"
                else ""
            )
            + ")."
            if win.get("ema")
            else ""
        )
    )
    pruned = [x for x in ts if x["config"].get("prune_from")]
    if pruned:
        sources = sorted(
            {Path(x["config"]["prune_from"]).parent.name + "/" + Path(x["config"]["prune_from"]).name for x in pruned}
        )
        imps = sorted({x["config"].get("prune_importance") for x in pruned})
        p = metrics.get("pruned")
        paras.append(
            f"**Pruning.** {len(pruned)} trial(s) started from a trained student wider than the budget "
            f"({', '.join(sources)}), removed whole channels with Torch-Pruning (DepGraph, Fang et al. 2023; "
            f"importance: {', '.join(imps)}) until at most {pruned[0]['config'].get('prune_to'):,} parameters "
            "remained, then fine-tuned with the loss below. "
            + (
                f"The exported student is one of them: {p['source']} pruned from {p['params_before']:,} to "
                f"{p['params_after']:,} parameters in {p['steps_taken']} step(s) by {p['importance']} importance."
                if p
                else "The exported student was designed at the budget, not pruned."
            )
        )
    s = run_cfg.get("sweep", {})
    search = [x for x in ts if x["stage"] == "search"]
    final = [x for x in ts if x["stage"] == "final"]
    variants = sorted({_label(x["config"]) + f" ({x['config'].get('student')})" for x in search})
    space = run_cfg.get("search_space") or {}
    local = str(run_meta.get("trained_with", "")).startswith("kdsweep train")
    if local:  # `kdsweep train`: explicit trials run to the end, no search, no Ray
        search, final = final, []
        paras.append(
            f"**Trials.** {len(search)} trials ({', '.join(sorted({_label(x['config']) for x in search}))}), each "
            f"trained to its last epoch without Ray ({run_meta['trained_with']}), no early stopping."
        )
    elif (said := run_meta.get("search") or {}).get("skipped"):
        paras.append(f"**Search.** Not run: {said['skipped']}.")
    else:
        acc = results_mod.search_account(ts, run_meta)
        cuts = ", ".join(f"{n} at epoch {e}" for e, n in acc["cut_at"].items())
        paras.append(
            f"**Search.** {len(search)} Ray Tune trials"
            + (f" over {', '.join(variants)}" if len(variants) <= 8 else "")
            + (f"; sampled keys: {', '.join(space)}" if space else "")
            + ", proposed by "
            + ("Optuna's TPE" if acc["searcher"] == "optuna" else "random draws or the listed trials")
            + ", "
            f"{s.get('max_concurrent_trials')} at a time with {s.get('cpus_per_trial')} CPU each, "
            "ASHA early stopping on validation accuracy "
            f"(grace period {said.get('grace', s.get('grace_period'))} epochs, "
            f"reduction factor {said.get('reduction_factor', s.get('reduction_factor'))}, "
            f"at most {run_cfg['train']['epochs']} epochs); "
            f"{sum(x['status'].startswith('stopped') for x in search)} stopped early"
            + (f" ({cuts})" if cuts else "")
            + (
                f", {failed} failed (why: the table's status)"
                if (failed := sum(x["status"].startswith("failed") for x in search))
                else ""
            )
            + f"; {acc['trial_epochs']} trial-epochs, {acc['core_h']:.2f} core-hours in all."
            + (
                f" Would a cut trial have won? {chk['ahead_when_cut']} of the {chk['cut']} cut were ahead of the "
                f"winner when cut; by the recorded curves, configurations that far behind at that point finished "
                f"ahead {chk['expected']:.2f} times in {chk['judged']} such cuts."
                if (chk := acc.get("cut_check")) and chk["expected"] is not None
                else ""
            )
            + (
                f" Why the first rung is where it is: {said['rule']}."
                if said.get("rungs") and said.get("rule")
                else f" Said at its start: {said['statement']}."
                if said.get("statement")
                else ""
            )
        )
    if final:
        settings = sorted({_label(x["config"]) for x in final})
        paras.append(
            f"**Final stage.** The search's {len(settings)} best setting(s) by "
            f"validation accuracy ({', '.join(settings)}) were retrained from "
            f"scratch for {final[0]['epochs']} epochs, {len(final)} trial(s) in all; the export is the best of those "
            "checkpoints by validation accuracy."
        )
    kd = [x for x in search if _is_kd(x["config"].get("loss", ""))]
    ctl = [x for x in search if not _is_kd(x["config"].get("loss", ""))]
    if (run_meta.get("search") or {}).get("skipped"):
        paras.append(
            "**Compared.** The no-teacher control was not run this time (the search above was skipped). "
            f"The project's recorded comparisons on the same split, not this run: {CONTROL_RECORDS}."
        )
    elif kd and ctl:
        bk, bc = max(kd, key=lambda x: x["best_val_acc"]), max(ctl, key=lambda x: x["best_val_acc"])
        verdict = "distillation won" if bk["best_val_acc"] > bc["best_val_acc"] else "the no-teacher control won"
        paras.append(
            f"**Compared.** {'Among the trials' if local else 'In the search'}, "
            f"the best distilled trial ({_label(bk['config'])}) reached "
            f"{bk['best_val_acc']:.2%} validation accuracy against {bc['best_val_acc']:.2%} for the best no-teacher "
            f"control ({_label(bc['config'])}): {verdict} at this length ({bk['epochs']} epochs at most, one seed, "
            "so differences under about 0.3 points are within noise)."
        )
    if metrics.get("exported_trial"):
        paras.append(
            f"**Exported trial.** Named at export (`--trial {metrics['exported_trial']}`): its best epoch by "
            "validation accuracy, not necessarily the run's best trial."
        )
    paras.append(
        "**Data.** Fashion-MNIST: 60,000 training images cut into a seeded, stratified training/validation split; "
        f"every choice above ({'' if local else 'ASHA, '}the winner, the best epoch) used validation accuracy only. "
        "The 10,000 test "
        "images were read once, at export, to measure the figure below and write the submission."
    )
    return paras


def _md_table(df) -> str:
    cols = list(df.columns)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


LOAD_LINES = """import torch
model = torch.export.load("student.pt2").module()        # or onnxruntime.InferenceSession("student.onnx")
logits = model(torch.rand(8, 1, 28, 28))                 # pixels in [0, 1], white garment on black"""


def _tta_text(m: dict) -> str:
    """What the shipped model averages over, and what validation said about it."""
    if by := m.get("val_acc_by_tta"):  # export --tta auto measured each view set
        said = ", ".join(f"{k} {v:.4f}" for k, v in by.items())
        return f"{m['tta']}, the best on validation of the view sets tried ({said})"
    plain, flip = m.get("val_acc_plain"), m.get("val_acc_flip")
    if plain is None or flip is None:
        return m.get("tta", "none")
    if m.get("tta") == "flip":
        return f"horizontal flip (logits averaged): validation {flip:.4f} against {plain:.4f} without"
    asked = (m.get("config") or {}).get("tta") == "flip"
    return (
        f"none: {'train.tta flip did not help here' if asked else 'not asked for'} "
        f"(validation {plain:.4f}; flip-averaged {flip:.4f})"
    )


MISSION_PARAMS = 23_528_522  # the course's ResNet-50 (torchvision layout, 10 classes): torchinfo's count


def _named(path: str) -> str:
    """A file as a report names it: relative to the project where it lies inside it, else by its name alone
    (a path on the machine that built the run means nothing to a reader; the sha256 beside it identifies it)."""
    rel = project_relative(path)
    return Path(rel).name if Path(rel).is_absolute() else rel


def _release_point() -> dict | None:
    """The released student as a point on the front's MACs panel (its validation at its own length)."""
    from orchestrator.release.promote import STUDENT_RELEASE
    from students import count_macs, create_student

    path = STUDENT_RELEASE / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    macs = count_macs(create_student(m["student"], **(m.get("student_kwargs") or {})))
    epochs = (m.get("config") or {}).get("epochs")
    return dict(val=m["val_acc"], macs=macs, label=f"the release ({epochs} epochs)" if epochs else "the release")


def write_report(run_dir: Path, out: Path, metrics: dict, run_meta: dict, model=None) -> Path:
    """report.md + report.html (+ PNG plots) in `out`; `model` (pixels in [0,1] -> logits) adds the confusion
    matrix. Returns the path of report.md."""
    run_dir, out = Path(run_dir), Path(out)
    cfg_file = run_dir / results_mod.CONFIG_FILE
    run_cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else dict(run_meta.get("config") or {})
    ts = results_mod.trials(run_dir) if (run_dir / results_mod.CONFIG_FILE).is_file() else []
    confusion = val_confusion(model, run_cfg) if model is not None and run_cfg.get("data") else None
    plots = _plots(ts, metrics, out, confusion, run_meta)
    paras = method_text(ts, metrics, run_meta, run_cfg) if run_cfg else []
    if chosen := (run_meta.get("final") or {}).get("chosen"):  # the two best, compared on the same images
        paras.append(f"**The winner, against the runner-up.** {chosen[0].upper()}{chosen[1:]}.")
    if points := front_mod.ledger_points(run_cfg):  # a search kept in a ledger: every chunk's candidates
        winner = max((p for p in points if p.finished), key=lambda p: p.best_val, default=None)
        plots["front"] = front_mod.front_plot(
            points, out / "search_front.png", winner and winner.index, _release_point()
        )
        paras.append(
            "**Accuracy and cost.** "
            + "; ".join(front_mod.front_lines(points)[:1])
            + ". The front (best validation at the search's length against the shape's multiply-adds): "
            + "; ".join(
                f"c{p.index:03d} {p.best_val:.4f} at {p.macs / 1e6:.1f} M MACs ({p.label})"
                for p in front_mod.front(points)
            )
            + "."
        )
    table = results_mod.table(run_dir) if ts else None
    t = run_meta.get("teacher") or {}
    headline = [
        ("student", f"{metrics['student']} {metrics.get('student_kwargs') or ''}"),
        ("parameters (torchinfo)", f"{metrics['params']:,} of {metrics.get('budget', 100_000):,}"),
        ("validation accuracy (used for selection)", f"{metrics['val_acc']:.4f}"),
        ("test-time augmentation", _tta_text(metrics)),
        ("test accuracy (measured once, at export; never used to choose)", f"{metrics['test_acc']:.4f}"),
        (
            "teacher",
            f"{t.get('arch', 'none')}, {t.get('params', 0):,} params, val {t.get('val_acc', float('nan')):.4f}",
        ),
        (
            "compression (teacher / student parameters)",
            f"{t['params'] / metrics['params']:.0f}x" if t.get("params") else "-",
        ),
        (
            "compression against the course's ResNet-50",
            f"{MISSION_PARAMS / metrics['params']:.0f}x ({MISSION_PARAMS:,} / {metrics['params']:,} parameters)"
            + (
                f"; the student's teacher was a {t.get('arch')}, not the ResNet-50"
                if t.get("arch") and t.get("arch") != "resnet50"
                else ""
            ),
        ),
        ("teacher forwards this run", f"{run_meta.get('teacher_forwards', 0):,}"),
        ("sweep wall time", f"{(run_meta.get('wall_s') or 0) / 60:.1f} min"),
        ("machine", metrics.get("machine", "")),
    ]
    for name, ms in (metrics.get("latency_ms") or {}).items():
        headline.append((f"CPU latency, {name}", ", ".join(f"batch {b}: {v:.2f} ms" for b, v in ms.items())))
    if metrics.get("file_bytes"):
        headline.append(("files", ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in metrics["file_bytes"].items())))
    summary = (out / "summary.txt").read_text().rstrip() if (out / "summary.txt").is_file() else ""
    config_json = json.dumps(metrics.get("config", {}), indent=1)
    title = f"kdsweep report: {run_meta.get('name', run_dir.name)}"

    md = [
        f"# {title}",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in headline],
        "",
        "## Method",
        "",
        *[p + "\n" for p in paras],
        "## Plots",
        "",
        *[f"![{k}]({p.name})\n" for k, p in plots.items()],
        "## Trials (best epoch of each by validation accuracy, and why each stopped)",
        "",
        _md_table(table) if table is not None else "",
        "",
        "## Student summary (torchinfo)",
        "",
        "```",
        summary,
        "```",
        "",
        "## The exported student's full configuration",
        "",
        "```json",
        config_json,
        "```",
        "",
        "## Load and run it",
        "",
        "```python",
        LOAD_LINES,
        "```",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))

    def img(p: Path) -> str:
        return f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'

    def para(p: str) -> str:
        text = html.escape(p)
        while "**" in text:  # **bold** -> <b>bold</b>
            text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
        while text.count("`") >= 2:
            text = text.replace("`", "<code>", 1).replace("`", "</code>", 1)
        return f"<p>{text}</p>"

    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<table class=h>",
        *[f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in headline],
        "</table>",
        "<h2>Method</h2>",
        *[para(p) for p in paras],
        "<h2>Plots</h2>",
        *[img(p) for p in plots.values()],
        "<h2>Trials</h2>",
        table.to_html(index=False, float_format=lambda v: f"{v:.4f}") if table is not None else "",
        "<h2>Student summary (torchinfo)</h2>",
        f"<pre>{html.escape(summary)}</pre>",
        "<h2>The exported student's full configuration</h2>",
        f"<pre>{html.escape(config_json)}</pre>",
        "<h2>Load and run it</h2>",
        f"<pre>{html.escape(LOAD_LINES)}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "img{max-width:100%;display:block;margin:1em 0}table{border-collapse:collapse;font-size:0.85em}"
        "td,th{border:1px solid #ccc;padding:0.2em 0.5em;text-align:left}pre{background:#f6f6f6;padding:0.5em;"
        "overflow-x:auto;font-size:0.8em}"
    )
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return out / "report.md"
