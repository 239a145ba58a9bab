"""A search's candidates as accuracy against cost, and the front: those no cheaper candidate beats.

Read from the search's ledger (sweep.ledger, orchestrator/run/ledger.py), which holds every candidate of
every chunk with its parameters, multiply-adds and measured training speed beside its validation curve.
Cost is what a candidate's shape asks of the machine: training images/s on one core (measured while the
search ran, so beside whatever else ran), and MACs of one 28x28 forward (a property of the shape).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from orchestrator.loader import resolve_path
from orchestrator.run.ledger import PLAN_FILE, Ledger


@dataclass(frozen=True)
class Point:
    index: int
    label: str
    params: int
    macs: int
    images_per_s: float
    best_val: float
    epochs: int
    end: str

    @property
    def finished(self) -> bool:
        return self.end == "finished"


def label(variant: dict) -> str:
    """A candidate's drawn settings in a few characters: its shape first (d: depths, s: strides, r: ratios)."""
    short = {"student_kwargs.depths": "d", "student_kwargs.strides": "s", "student_kwargs.ratios": "r"}
    parts = []
    for k, v in variant.items():
        if k in short:
            parts.append(short[k] + "-".join(f"{x:g}" for x in v))
        elif k == "student_kwargs.attn":
            parts.append(str(v))
        elif isinstance(v, float):
            parts.append(f"{k.removeprefix('student_kwargs.')} {v:.3g}")
        else:
            parts.append(f"{k.removeprefix('student_kwargs.')} {v}")
    return " ".join(parts)


def ledger_points(run_cfg: dict) -> list[Point]:
    """Every candidate the run's ledger holds that reported an epoch ([] without a ledger)."""
    path = (run_cfg.get("sweep") or {}).get("ledger")
    if not path or not (Path(resolve_path(path)) / PLAN_FILE).is_file():
        return []
    folder = Path(resolve_path(path))
    cands = json.loads((folder / PLAN_FILE).read_text())["candidates"]
    out = []
    for e in Ledger(folder).entries(cands):
        if not e.rows:
            continue
        speeds = [r["images_per_s"] for r in e.rows if r.get("images_per_s")]
        out.append(
            Point(
                e.index,
                label(e.variant),
                int(e.rows[-1].get("params", 0)),
                int(e.rows[-1].get("macs", 0)),
                statistics.median(speeds) if speeds else 0.0,
                e.best,
                len(e.rows),
                e.end or "running or interrupted",
            )
        )
    return out


def front(points: list[Point], cost: str = "macs") -> list[Point]:
    """The finished candidates no cheaper (by `cost`: macs, or images_per_s where more is cheaper) finished
    candidate matches in validation accuracy, cheapest first."""
    key = (lambda p: -p.images_per_s) if cost == "images_per_s" else (lambda p: p.macs)
    out: list[Point] = []
    for p in sorted((p for p in points if p.finished), key=lambda p: (key(p), -p.best_val)):
        if not out or p.best_val > out[-1].best_val:
            out.append(p)
    return out


def cuts(points: list[Point]) -> dict[int, int]:
    """How many candidates the rungs stopped, by the epoch they were stopped at."""
    out: dict[int, int] = {}
    for p in points:
        if p.end.startswith("stopped at epoch "):
            e = int(p.end.rsplit(" ", 1)[-1])
            out[e] = out.get(e, 0) + 1
    return dict(sorted(out.items()))


def front_lines(points: list[Point]) -> list[str]:
    """The front as `kdsweep results` prints it: counts, then one line per front candidate."""
    if not points:
        return []
    done = [p for p in points if p.finished]
    cut = cuts(points)
    lines = [
        f"candidates: {len(points)} reported, {len(done)} trained to the end, "
        f"{sum(cut.values())} cut ({', '.join(f'{n} at epoch {e}' for e, n in cut.items()) or 'none'})",
        "front (finished candidates no cheaper one matches; MACs of one image, training images/s on one core):",
    ]
    lines += [
        f"  c{p.index:03d} val {p.best_val:.4f}  {p.macs / 1e6:5.1f} M MACs  {p.images_per_s:6.0f} img/s  "
        f"{p.params:,} params  {p.label}"
        for p in front(points)
    ]
    return lines


def front_plot(points: list[Point], path: Path, winner: int | None = None, release: dict | None = None) -> Path:
    """Validation accuracy against MACs and against training images/s: finished candidates, the front, cut
    candidates (at their best before the cut), the winner; `release` ({"val", "macs", "label"}) as a marked
    point on the MACs panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, cost, xlabel in (
        (axes[0], "macs", "multiply-adds of one 28x28 image (millions)"),
        (axes[1], "images_per_s", "training images/s on one core (measured in the search)"),
    ):
        x = (lambda p: p.macs / 1e6) if cost == "macs" else (lambda p: p.images_per_s)
        done = [p for p in points if p.finished]
        cut = [p for p in points if not p.finished]
        ax.scatter([x(p) for p in cut], [p.best_val for p in cut], marker="x", c="0.6", label="cut by a rung")
        ax.scatter([x(p) for p in done], [p.best_val for p in done], c="tab:blue", label="trained to the end")
        f = front(points, cost)
        ax.plot([x(p) for p in f], [p.best_val for p in f], c="tab:blue", lw=1, drawstyle="steps-post")
        for p in done:
            if p.index == winner:
                ax.scatter([x(p)], [p.best_val], marker="*", s=220, c="tab:red", label="the winner", zorder=3)
        if release and cost == "macs" and release.get("macs"):
            ax.scatter([release["macs"] / 1e6], [release["val"]], marker="D", c="tab:green", label=release["label"])
        ax.set(xlabel=xlabel)
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="best validation accuracy")
    lo = min([p.best_val for p in points if p.finished] or [0.9])
    axes[0].set_ylim(max(0.0, lo - 0.01), None)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"The search's candidates: accuracy against cost ({len(points)} candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
