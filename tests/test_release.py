"""Releases change only through `kdsweep release`, and only for a candidate better on validation."""

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.release import promote
from orchestrator.release.promote import ReleaseRefused, release_student, release_teacher


def _export(d: Path, val: float, params: int = 90_000, split=(5000, 0), size: int = 1000, **more) -> Path:
    d.mkdir(parents=True)
    (d / "student.pt").write_bytes(b"w" * size)
    (d / "student.pt2").write_bytes(b"p")
    (d / "metrics.json").write_text(
        json.dumps(
            dict(
                student="res3",
                val_acc=val,
                params=params,
                budget=100_000,
                data=dict(val_size=split[0], split_seed=split[1]),
                **more,
            )
        )
    )
    return d


def _right(n_right: int, n: int = 5000, first: int = 0):
    """Which of n validation images a model gets right: n_right of them, from image `first` on."""
    ok = np.zeros(n, bool)
    ok[first : first + n_right] = True
    return ok


@pytest.fixture
def scored(monkeypatch):
    """The gate's measurement, faked per export directory name: {name: bool (N,)} (the real one is tested
    on real models below)."""
    table: dict = {}
    monkeypatch.setattr(promote, "load_split", lambda d, size, seed: None)
    monkeypatch.setattr(promote, "val_correct", lambda export_dir, tta, split: table[Path(export_dir).name])
    return table


def test_release_student_only_when_a_paired_test_calls_it_better(tmp_path, scored):
    dest = tmp_path / "models" / "student"
    _export(dest, 0.9400)
    (dest / "README.md").write_text("how it was made\n")
    scored["student"] = _right(4700)  # the release: 0.9400
    scored["worse"] = _right(4695)
    with pytest.raises(ReleaseRefused, match=r"0.9390 against the release 0.9400 .* 5 only the release\); McNemar"):
        release_student(_export(tmp_path / "worse", 0.9390), dest)
    scored["one_more"] = _right(4701)  # one image better: noise, a tie keeps the release
    with pytest.raises(ReleaseRefused, match=r"a tie \(p 1 >= 0.05\) \(test-time views none\): not better by a margin"):
        release_student(_export(tmp_path / "one_more", 0.9402), dest)
    scored["other_images"] = _right(4720, first=60)  # +0.004 but 60 lost, 80 won: still a tie
    with pytest.raises(ReleaseRefused, match="disagree on 140 .* a tie"):
        release_student(_export(tmp_path / "other_images", 0.9440), dest)
    assert json.loads((dest / "metrics.json").read_text())["val_acc"] == 0.9400  # untouched
    with pytest.raises(ReleaseRefused, match="another split"):
        release_student(_export(tmp_path / "other", 0.95, split=(10000, 0)), dest)
    with pytest.raises(ReleaseRefused, match="over the budget"):
        release_student(_export(tmp_path / "big", 0.95, params=100_001), dest)
    with pytest.raises(ReleaseRefused, match="over 1 MB"):
        release_student(_export(tmp_path / "heavy", 0.95, size=1_000_001), dest)
    scored["better"] = _right(4712)  # 12 images only it gets right, none the other way: p = 2 / 2^12
    release_student(_export(tmp_path / "better", 0.9424, command="kdsweep sweep --config c.yaml --release"), dest)
    assert json.loads((dest / "metrics.json").read_text())["val_acc"] == 0.9424
    readme = (dest / "README.md").read_text()  # written from the release's own metrics, never stale
    assert "**0.9424**" in readme and "| replaced | val 0.9400" in readme and "how it was made" not in readme
    assert "| made by | `kdsweep sweep --config c.yaml --release` |" in readme
    assert (
        "| against it | the candidate res3 0.9424 against the release 0.9400" in readme and "res3 better (p" in readme
    )
    assert not [d for d in dest.parent.glob(".student.*") if d.is_dir()]  # no temp dirs left (the lock file stays)


def test_the_gate_scores_both_students_now_on_the_same_images_and_views(tmp_path, monkeypatch):
    """against_release measures the candidate and the release from their student.pt, on the split the
    candidate was validated on, both with the candidate's test-time views."""
    import torch

    from students import create_student

    def save(d: Path, seed: int, tta: str):
        torch.manual_seed(seed)
        m = create_student("resdw_w24_d111")
        _export(d, 0.5, tta=tta)
        state = dict(student="resdw_w24_d111", student_kwargs={}, config=dict(mean=0.286, std=0.353), metrics={})
        torch.save(dict(state, state_dict=m.state_dict()), d / "student.pt")
        return d

    split, asked = promote.load_split, []
    monkeypatch.setattr(
        promote, "load_split", lambda d, size, seed: asked.append((size, seed)) or split(d, size, seed, val_limit=300)
    )
    dest, cand = save(tmp_path / "release", 0, "flip"), save(tmp_path / "cand", 1, "flip_shift")
    views = []
    real = promote.val_correct
    monkeypatch.setattr(promote, "val_correct", lambda d, tta, s: views.append(tta) or real(d, tta, s))
    pair = promote.against_release(cand, json.loads((cand / "metrics.json").read_text()), dest)
    assert asked == [(5000, 0)] and views == ["flip_shift", "flip_shift"] and pair.n == 300
    assert pair.acc_a == pytest.approx(real(cand, "flip_shift", split(None, 5000, 0, val_limit=300)).mean())
    same = promote.against_release(dest, json.loads((dest / "metrics.json").read_text()), dest)
    assert same.only_a == same.only_b == 0 and same.tie  # a model against itself: no image differs


def test_release_teacher_only_when_better(tmp_path):
    dest = tmp_path / "teacher"
    dest.mkdir()
    (dest / "resnet50.pt").write_bytes(b"old")
    (dest / "resnet50.json").write_text(json.dumps(dict(arch="resnet50", val_acc=0.92)))
    cand = tmp_path / "artifacts" / "t.pt"
    cand.parent.mkdir()
    cand.write_bytes(b"new")
    cand.with_suffix(".json").write_text(json.dumps(dict(arch="resnet50", val_acc=0.91)))
    with pytest.raises(ReleaseRefused, match="not above the release's 0.9200"):
        release_teacher(cand, "resnet50", dest)
    assert (dest / "resnet50.pt").read_bytes() == b"old"
    cand.with_suffix(".json").write_text(json.dumps(dict(arch="resnet50", val_acc=0.93)))
    release_teacher(cand, "resnet50", dest)
    assert (dest / "resnet50.pt").read_bytes() == b"new"
    assert json.loads((dest / "resnet50.json").read_text())["val_acc"] == 0.93


def test_nothing_else_writes_into_models(tmp_path, capsys):
    from orchestrator.cli import main
    from orchestrator.release.export import export

    assert promote.inside_models(promote.MODELS / "student") and not promote.inside_models(tmp_path)
    with pytest.raises(ReleaseRefused, match="changes only through `kdsweep release`"):
        export(tmp_path, promote.MODELS / "student")
    assert main(["teacher", "train", "--out", str(promote.MODELS / "teacher" / "x.pt")]) == 2
    assert "changes only through `kdsweep release`" in capsys.readouterr().err
    assert main(["release", "student", "--from", str(tmp_path / "nothing")]) == 2
    assert "is not an export" in capsys.readouterr().err


def test_flip_tta_ships_only_where_it_helped_and_exports(tmp_path):
    """The exported model averages over the mirror when train.tta asked for it and it helped that checkpoint
    on validation; .pt2 and ONNX carry it (the parameter count does not change)."""
    import torch

    from orchestrator.release.deploy import Deployable, shipped_tta
    from orchestrator.release.export import export_onnx, export_program
    from students import count_params, create_student

    asked = dict(config=dict(tta="flip"), metrics=dict(val_acc_plain=0.90, val_acc_flip=0.91))
    assert shipped_tta(asked) == "flip"
    assert shipped_tta(dict(config=dict(tta="flip"), metrics=dict(val_acc_plain=0.91, val_acc_flip=0.91))) == "none"
    assert shipped_tta(dict(config=dict(tta="none"), metrics=dict(val_acc_plain=0.90, val_acc_flip=0.95))) == "none"
    assert shipped_tta(dict(config={}, metrics={})) == "none"  # checkpoints from before the option
    # shipped_tta "auto" (the flip wherever the trial's metrics say it helped); export --tta auto measures more
    trained_plain = dict(config=dict(tta="none"), metrics=dict(val_acc_plain=0.90, val_acc_flip=0.95))
    assert shipped_tta(trained_plain, "auto") == "flip" and shipped_tta(asked, "none") == "none"
    flip_worse = dict(config=dict(tta="none"), metrics=dict(val_acc_plain=0.95, val_acc_flip=0.90))
    assert shipped_tta(flip_worse, "auto") == "none"
    student = create_student("resdw_w24_d111").eval()
    flip = Deployable(student, 0.286, 0.353, "flip").eval()
    x = torch.rand(5, 1, 28, 28)
    plain = Deployable(student, 0.286, 0.353).eval()
    with torch.no_grad():
        assert torch.allclose(flip(x), (plain(x) + plain(x.flip(-1))) / 2, atol=1e-6)
        export_program(flip, tmp_path / "s.pt2")
        root = str(Path(__file__).resolve().parent.parent).encode()
        assert root not in (tmp_path / "s.pt2").read_bytes()  # no machine paths in a shipped file
        prog = torch.export.load(str(tmp_path / "s.pt2")).module()
        assert torch.allclose(prog(x), flip(x), atol=1e-5)
    export_onnx(flip, tmp_path / "s.onnx")  # checked against eager inside
    assert count_params(flip.student) == count_params(student)


def test_six_view_tta_is_the_training_shift_and_exports(tmp_path):
    """flip_shift: the image and its mirror, and both shifted one pixel up-left and down-right with a black
    fill (exactly trainables.augment.apply_views' shift), weighted 1/2, 1/4, 1/4; it exports to .pt2 and
    ONNX, and export --tta auto ships whichever view set validation ranks first (ties: fewer views)."""
    import torch

    from orchestrator.release.deploy import Deployable, choose_tta
    from orchestrator.release.export import export_onnx, export_program
    from students import create_student
    from trainables.augment import ViewSpec, apply_views

    torch.manual_seed(0)
    student = create_student("resdw_w24_d111").eval()
    six = Deployable(student, 0.286, 0.353, "flip_shift").eval()
    plain = Deployable(student, 0.286, 0.353).eval()
    u8 = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    spec = ViewSpec(1, True)
    ids = {tuple(int(v) for v in spec.decode(torch.tensor([i]))): i for i in range(spec.n_views)}

    def view(dy, dx, f):  # apply_views decodes (dy, dx, flip) and mirrors before shifting
        return apply_views(u8, torch.full((3,), ids[(dy, dx, f)]), spec).float().div(255).unsqueeze(1)

    with torch.no_grad():
        ref = sum(
            w * plain(view(dy, dx, int(f)))
            for (dy, dx, f), w in {
                (0, 0, 0): 0.25,
                (0, 0, 1): 0.25,
                (-1, -1, 0): 0.125,
                (-1, -1, 1): 0.125,
                (1, 1, 0): 0.125,
                (1, 1, 1): 0.125,
            }.items()
        )
        assert torch.allclose(six(u8.float().div(255).unsqueeze(1)), ref, atol=1e-5)
        export_program(six, tmp_path / "s.pt2")
        x = torch.rand(4, 1, 28, 28)
        assert torch.allclose(torch.export.load(str(tmp_path / "s.pt2")).module()(x), six(x), atol=1e-5)
    export_onnx(six, tmp_path / "s.onnx")  # checked against eager inside
    val_x = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8).numpy()
    with torch.no_grad():
        val_y = plain(torch.as_tensor(val_x).float().div(255).unsqueeze(1)).argmax(1).numpy()  # plain is right
    best, acc = choose_tta(student, dict(mean=0.286, std=0.353), val_x, val_y)
    assert set(acc) == {"none", "flip", "flip_shift"} and acc["none"] == 1.0 and best == "none"


def test_two_releases_at_once_leave_one_whole_release_and_tell_the_other_why(tmp_path, monkeypatch):
    """Two `kdsweep release student` racing with different candidates, both better than the release: they
    run one at a time, so the second is compared with what the first released; one whole release remains
    (its files and metrics from one candidate) and the other is refused with the paired test's reason."""
    import threading
    import time

    right = {"old": _right(4700), "a": _right(4740), "b": _right(4730)}  # a and b beat the release, a beats b

    def scores(export_dir, tta, split):  # what the export in export_dir gets right: by the candidate it holds
        held = json.loads((Path(export_dir) / "metrics.json").read_text())["tag"]
        time.sleep(0.2)  # read, then the forward passes: the race window
        return right[held]

    monkeypatch.setattr(promote, "load_split", lambda d, size, seed: None)
    monkeypatch.setattr(promote, "val_correct", scores)
    dest = tmp_path / "models" / "student"
    _export(dest, 0.9400, tag="old")
    outcomes = {}

    def run(tag: str, val: float):
        try:
            release_student(_export(tmp_path / tag, val, tag=tag), dest)
            outcomes[tag] = "released"
        except ReleaseRefused as e:
            outcomes[tag] = str(e)

    threads = [threading.Thread(target=run, args=a) for a in (("a", 0.948), ("b", 0.946))]
    threads[0].start()
    time.sleep(0.05)  # b asks while a is comparing
    threads[1].start()
    for t in threads:
        t.join()
    assert outcomes["a"] == "released"
    assert (
        "against the release 0.9480" in outcomes["b"] and "not better by a margin the test calls real" in outcomes["b"]
    )
    m = json.loads((dest / "metrics.json").read_text())
    assert m["tag"] == "a" and m["val_acc"] == 0.948  # one whole release: a's


def test_a_release_that_meets_a_full_disk_leaves_the_old_one_whole(tmp_path, scored):
    """The release's disk fills while the candidate is copied in: one line names the path and the space, the
    release before it stays whole and no temp directory is left; with room, the same command releases."""
    import subprocess

    from orchestrator.run.io import DiskFullError

    models = tmp_path / "models"
    models.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(models)], capture_output=True, text=True)
    assert p.returncode == 0, f"this test mounts a small tmpfs and needs root: {p.stderr.strip()}"
    try:
        dest = models / "student"
        _export(dest, 0.9400)
        scored["student"], scored["better"] = _right(4700), _right(4712)
        with pytest.raises(DiskFullError, match="the disk is full"):
            release_student(_export(tmp_path / "better", 0.9424, size=200_000), dest)
        assert json.loads((dest / "metrics.json").read_text())["val_acc"] == 0.9400  # the old release, whole
        assert (dest / "student.pt").stat().st_size == 1000
        assert not [d for d in models.glob(".student.*") if d.is_dir()]  # no temp directory left
        (tmp_path / "better" / "student.pt").write_bytes(b"w" * 20_000)  # a candidate that fits
        release_student(tmp_path / "better", dest)
        assert json.loads((dest / "metrics.json").read_text())["val_acc"] == 0.9424
    finally:
        subprocess.run(["umount", str(models)], check=True)
