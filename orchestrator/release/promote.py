"""`kdsweep release`: the only way `models/student/` and `models/teacher/` change.

A candidate (an export directory, or a teacher's weights with their JSON sidecar) replaces the release only
when it is better on validation, measured on the same split: a student by a paired test on the same
images (orchestrator/paired.py; a tie keeps the release), a teacher by its recorded accuracy; otherwise
nothing is touched and the refusal says why. Exports and teacher trainings write elsewhere (artifacts/)
and cannot write into models/.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from orchestrator.data import load_split
from orchestrator.errors import UserError
from orchestrator.paired import Paired, paired
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


def _check_better(cand: float, current: float | None, what: str, where: Path) -> None:
    if current is not None and not cand > current:
        raise ReleaseRefused(
            f"the candidate {what} scores {cand:.4f} on validation, not above the release's "
            f"{current:.4f}; {where} is unchanged"
        )


def val_correct(export_dir: Path, tta: str, split) -> np.ndarray:
    """Which validation images (split.val_x) the student in `export_dir`/student.pt classifies correctly with
    test-time views `tta`: bool (N,)."""
    state = torch.load(Path(export_dir) / "student.pt", map_location="cpu", weights_only=True)
    model = Deployable(deployed(rebuild(state)), state["config"]["mean"], state["config"]["std"], tta).eval()
    with torch.no_grad():
        return predict(model, split.val_x).argmax(1).numpy() == split.val_y


def against_release(candidate: Path, cand: dict, dest: Path, data_dir: str | None = None) -> Paired:
    """The candidate against the release on the same validation images, both with the candidate's test-time
    views, measured now from their student.pt: paired (McNemar's exact test)."""
    split = load_split(data_dir, *_split(cand))
    tta = cand.get("tta") or "none"
    return paired(val_correct(candidate, tta, split), val_correct(dest, tta, split))


def _swap_dir(src_files: dict[str, Path], dest: Path) -> None:
    """Copy `src_files` (name -> path) over `dest` as one rename; the files of `dest` not replaced stay."""

    def fill(tmp: Path):
        for name, path in src_files.items():
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, tmp / name)

    replace_dir(dest, fill)


def release_readme(m: dict, previous: dict | None, candidate: Path, paired_said: str = "") -> str:
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
        f"| against it | {paired_said} |" if paired_said else None,
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


@contextlib.contextmanager
def release_lock(dest: Path):
    """One release of `dest` at a time (an exclusive flock beside it): a second `kdsweep release` waits, then
    compares its candidate with what the first released, so two at once leave one whole release and tell
    the other why (POSIX file locks: local disks and NFS with locking)."""
    import fcntl

    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.release.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def release_student(candidate: str | Path, dest: Path = STUDENT_RELEASE, data_dir: str | None = None) -> dict:
    """Replace the released student by the export in `candidate` if a paired test on the validation images
    calls it better (against_release); its README is written from the export's metrics (release_readme), the
    other files of `dest` stay. Releases of one `dest` run one at a time (release_lock)."""
    with release_lock(Path(dest)):
        return _release_student(Path(candidate), Path(dest), data_dir)


def _release_student(candidate: Path, dest: Path, data_dir: str | None) -> dict:
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
    said = ""
    if current is not None:  # the same images, the candidate's views, both measured now: a tie keeps the release
        pair = against_release(candidate, cand, dest, data_dir)
        said = pair.sentence(f"the candidate {cand['student']}", "the release") + (
            f" (test-time views {cand.get('tta') or 'none'})"
        )
        if not pair.a_better:
            raise ReleaseRefused(f"{said}: not better by a margin the test calls real; {dest} is unchanged")
        log.info(said)
    files = {f.name: f for f in candidate.iterdir() if f.is_file() and f.name != "README.md"}
    readme = candidate.parent / f".{candidate.name}.release_readme.md"
    readme.write_text(release_readme(cand, current, candidate, said))
    files["README.md"] = readme
    try:
        _swap_dir(files, dest)
    finally:
        readme.unlink(missing_ok=True)
    log.info(f"released {cand['student']} (val {cand['val_acc']:.4f}) -> {dest}")
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
    with release_lock(Path(dest)):  # beside models/teacher/, which a release rebuilds whole
        return _release_teacher(candidate, side, name, Path(dest))


def _release_teacher(candidate: Path, side: Path, name: str, dest: Path) -> dict:
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
