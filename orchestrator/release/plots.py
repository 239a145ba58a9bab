"""The report's plots: validation curves, accuracy against parameters, distillation against its control, the
search's anytime curve and the confusion matrix on validation (the search's front: front.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrator.data import CLASSES, load_split
from orchestrator.release import results as results_mod
from orchestrator.release.method import is_kd, tag

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


def draw_plots(
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
            ep,
            acc,
            style,
            marker=".",
            label=f"{t['stage']}: {tag(c)} ({c.get('student')}, seed {c.get('seed')})",
        )
        if t["status"].startswith("stopped"):
            ax.plot(ep[-1], acc[-1], "x", color=line.get_color(), markersize=10)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch (x: stopped by ASHA)")
    accs = [x["val_acc"] for t in ts for x in t["history"]]
    if accs and max(accs) > 0.85:  # zoom on where the trials compete; the first epochs' low values stay cut off
        ax.set_ylim(max(min(accs), max(accs) - 0.08) - 0.002, max(accs) + 0.004)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    paths["curves"] = save(fig, out / "val_curves.png")

    kd = [t for t in ts if is_kd(t["config"].get("loss", ""))]
    control = [t for t in ts if not is_kd(t["config"].get("loss", ""))]
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
    paths["params"] = save(fig, out / "acc_vs_params.png")

    rows = compared(ts)
    if rows:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        names = bar_names(rows)
        colors = ["C0" if is_kd(t["config"].get("loss", "")) else "C3" for t in rows]
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
        paths["kd_vs_control"] = save(fig, out / "kd_vs_control.png")

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
        paths["anytime"] = save(fig, out / "search_anytime.png")

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
        paths["confusion"] = save(fig, out / "confusion_val.png")
    return paths


def compared(ts: list[dict]) -> list[dict]:
    """The trials the distillation-against-control bars set side by side, like with like: the search's where
    it ran both sides (one length), else all of them; none where the run lacks a side. Best first."""

    def both(rows):
        return any(is_kd(t["config"].get("loss", "")) for t in rows) and any(
            not is_kd(t["config"].get("loss", "")) for t in rows
        )

    search = [t for t in ts if t["stage"] == "search"]
    rows = search if both(search) else ts if both(ts) else []
    return sorted(rows, key=lambda t: (t["stage"] != "search", -t["best_val_acc"]))


def bar_names(rows: list[dict]) -> list[str]:
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
        names.append(f"{t['stage'][0]}: {tag(c)}{extra} s{c.get('seed')}")
    return [f"{n} ({t['trial']})" if names.count(n) > 1 else n for n, t in zip(names, rows)]


def save(fig, path: Path) -> Path:
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
