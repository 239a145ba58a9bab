"""`kdsweep release`: the only way `models/student/` and `models/teacher/` change.

A candidate (an export directory, or a teacher's weights with their JSON sidecar) replaces the release only
when it is better on validation, measured on the same split; otherwise nothing is touched and the refusal
says why. Exports and teacher trainings write elsewhere (artifacts/) and cannot write into models/.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from orchestrator.data import load_split
from orchestrator.errors import UserError
from orchestrator.release.deploy import Deployable, predict
from orchestrator.run.io import replace_dir
from students import BUDGET, deployed, rebuild

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
STUDENT_RELEASE = MODELS / "student"
TEACHER_RELEASE = MODELS / "teacher"
STUDENT_FILES = ("student.pt", "student.pt2", "student.onnx", "metrics.json")
MAX_STUDENT_BYTES = 1_000_000  # the released student.pt is committed: under 1 MB


class ReleaseRefused(UserError):
    """The candidate is not better than the release, or not a candidate at all: nothing was changed."""


def inside_models(path: str | Path) -> bool:
    """Whether `path` is (inside) models/: written only by `kdsweep release`."""
    p, m = Path(path).resolve(), MODELS.resolve()
    return p == m or m in p.parents


def refuse_models(path: str | Path, what: str) -> None:
    if inside_models(path):
        raise ReleaseRefused(
            f"{path} is inside models/, which changes only through `kdsweep release`: write the "
            f"{what} elsewhere (the default is under artifacts/), then `kdsweep release` it"
        )


def _split(m: dict) -> tuple:
    data = m.get("data") or {}  # exports before this field: the default split, which they all used
    return data.get("val_size") or 5000, data.get("split_seed") or 0


def _check_better(cand: float, current: float | None, what: str, where: Path, views: str = "") -> None:
    if current is not None and not cand > current:
        raise ReleaseRefused(
            f"the candidate {what} scores {cand:.4f} on validation{views}, not above the release's "
            f"{current:.4f}{' with the same views' if views else ''}; {where} is unchanged"
        )


def release_val_at(current: dict, dest: Path, tta: str, data_dir: str | None = None) -> tuple[float, bool]:
    """The release's validation accuracy with test-time views `tta` (a candidate's), so that a candidate is
    compared with the same views: from its metrics where its export measured them, else measured now from
    its student.pt on the same split (True: measured now)."""
    known = dict(current.get("val_acc_by_tta") or {})
    for views, key in (("none", "val_acc_plain"), ("flip", "val_acc_flip")):
        if current.get(key) is not None:
            known.setdefault(views, current[key])
    if current.get("tta"):
        known.setdefault(current["tta"], current["val_acc"])
    if tta in known:
        return known[tta], False
    state = torch.load(dest / "student.pt", map_location="cpu", weights_only=True)
    val_size, seed = _split(current)
    split = load_split(data_dir, val_size, seed)
    model = Deployable(deployed(rebuild(state)), state["config"]["mean"], state["config"]["std"], tta).eval()
    with torch.no_grad():
        acc = float((predict(model, split.val_x).argmax(1).numpy() == split.val_y).mean())
    return round(acc, 4), True


def _swap_dir(src_files: dict[str, Path], dest: Path) -> None:
    """Copy `src_files` (name -> path) over `dest` as one rename; the files of `dest` not replaced stay."""

    def fill(tmp: Path):
        for name, path in src_files.items():
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, tmp / name)

    replace_dir(dest, fill)


def release_readme(m: dict, previous: dict | None, candidate: Path) -> str:
    """The release's README, from its export's metrics: what it is, its figures, how it was made, what it
    replaced. Written by the release, so that it cannot describe another model than the one beside it."""
    import datetime

    c = m.get("config") or {}
    recipe = ", ".join(
        f"{k} {c[k]}"
        for k in ("loss", "temperature", "alpha", "label_smoothing", "lr", "epochs", "batch_size", "ema", "seed")
        if k in c
    )
    lat = m.get("latency_ms") or {}
    lines = [
        "# The released student",
        "",
        f"Written by `kdsweep release student` on {datetime.date.today()} from `{candidate}`: the export of run "
        f"`{m.get('run_dir')}` (its report: `report.html`, `report.md`).",
        "",
        "| | |",
        "|---|---|",
        f"| student | `{m['student']}`, {m['params']:,} parameters (torchinfo; budget {m.get('budget', BUDGET):,}) |",
        f"| validation | **{m['val_acc']:.4f}** with test-time views `{m.get('tta', 'none')}`"
        + (f" ({m['val_acc_plain']:.4f} without)" if m.get("val_acc_plain") is not None else "")
        + "; {:,} validation images, split seed {} |".format(*_split(m)),
        f"| test | **{m['test_acc']:.4f}** (read once, at export) |" if m.get("test_acc") is not None else None,
        f"| made by | `{m['command']}` |" if m.get("command") else None,
        f"| recipe | {recipe} |",
        f"| teacher | sha256 {str(m.get('teacher_sha256'))[:12]}, val {m.get('teacher_val_acc') or 0:.4f}, "
        f"mode {m.get('teacher_mode')} |",
        f"| trained on | {m.get('machine')}, {m.get('train_precision')} |",
        "| replaced | "
        + (
            f"val {previous['val_acc']:.4f}, test {previous.get('test_acc', 0):.4f} (`{previous.get('student')}`, "
            f"run `{previous.get('run_dir')}`) |"
            if previous
            else "nothing |"
        ),
        "",
        "`student.pt2` (torch.export) and `student.onnx` take `(N, 1, 28, 28)` pixels in [0, 1] (white garment on "
        "black) and return `(N, 10)` logits, the test-time views inside; `student.pt` holds the weights with the "
        "student's name, kwargs and config. `submission.csv`: `id,label` for the 10,000 test images.",
    ]
    if lat:
        lines += [
            "",
            "Latency (ms, batch 1 / 256, on the machine above): "
            + "; ".join(f"{k} {v.get('1', 0):.2f} / {v.get('256', 0):.0f}" for k, v in lat.items())
            + ".",
        ]
    return "\n".join(x for x in lines if x is not None) + "\n"


def release_student(candidate: str | Path, dest: Path = STUDENT_RELEASE) -> dict:
    """Replace the released student by the export in `candidate` if it is better on validation; its README is
    written from the export's metrics (release_readme), the other files of `dest` stay."""
    candidate = Path(candidate)
    mpath = candidate / "metrics.json"
    if not mpath.is_file():
        raise ReleaseRefused(
            f"{candidate} is not an export (no metrics.json); `kdsweep export --run runs/<name>` "
            "makes one under artifacts/<name>"
        )
    cand = json.loads(mpath.read_text())
    if cand.get("params", BUDGET + 1) > cand.get("budget", BUDGET):
        raise ReleaseRefused(f"the candidate has {cand.get('params')} parameters, over the budget")
    if (candidate / "student.pt").stat().st_size > MAX_STUDENT_BYTES:
        raise ReleaseRefused(f"{candidate / 'student.pt'} is over 1 MB, too large to commit as the release")
    current = json.loads((dest / "metrics.json").read_text()) if (dest / "metrics.json").is_file() else None
    if current is not None and _split(current) != _split(cand):
        raise ReleaseRefused(
            f"the candidate was validated on another split {_split(cand)} than the release "
            f"{_split(current)}: the two are not comparable"
        )
    current_val, views = current and current["val_acc"], ""
    if current is not None and cand.get("tta"):  # compared with the candidate's test-time views
        current_val, measured = release_val_at(current, dest, cand["tta"])
        views = f" with test-time views {cand['tta']}"
        if measured:
            log.info(f"the release measured now with the candidate's views ({cand['tta']}): val {current_val:.4f}")
    _check_better(cand["val_acc"], current_val, f"student {cand['student']}", dest, views)
    files = {f.name: f for f in candidate.iterdir() if f.is_file() and f.name != "README.md"}
    readme = candidate.parent / f".{candidate.name}.release_readme.md"
    readme.write_text(release_readme(cand, current, candidate))
    files["README.md"] = readme
    try:
        _swap_dir(files, dest)
    finally:
        readme.unlink(missing_ok=True)
    log.info(
        f"released {cand['student']} (val {cand['val_acc']:.4f}{views}"
        + (f"; the release it replaced: {current_val:.4f}" if current else "")
        + f") -> {dest}"
    )
    return cand


def release_teacher(candidate: str | Path, name: str, dest: Path = TEACHER_RELEASE) -> dict:
    """Replace models/teacher/<name>.pt (+ .json, _history.json) by `candidate` (weights + sidecar) if it is
    better on validation."""
    candidate = Path(candidate)
    side = candidate.with_suffix(".json")
    if not candidate.is_file() or not side.is_file():
        raise ReleaseRefused(
            f"{candidate}: a teacher release is its weights plus the JSON sidecar beside them "
            "(`kdsweep teacher train` writes both)"
        )
    cand = json.loads(side.read_text())
    current_side = dest / f"{name}.json"
    current = json.loads(current_side.read_text()) if current_side.is_file() else None
    _check_better(
        cand["val_acc"], current and current.get("val_acc"), f"teacher {cand.get('arch')}", dest / f"{name}.pt"
    )
    files = {f"{name}.pt": candidate, f"{name}.json": side}
    hist = candidate.with_name(f"{candidate.stem}_history.json")
    if hist.is_file():
        files[f"{name}_history.json"] = hist
    _swap_dir(files, dest)
    log.info(
        f"released teacher {cand.get('arch')} as {name} (val {cand['val_acc']:.4f}"
        + (f", was {current['val_acc']:.4f}" if current else "")
        + f") -> {dest}"
    )
    return cand
