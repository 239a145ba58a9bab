"""A disk that fills up mid-write, for real (a 64 KiB tmpfs mounted for the test), and records cut short.
Every write through the shared writers fails with one line naming the path and the space; nothing
half-written is later read as whole; freeing space and writing again works; a torn record is named in one
line by the shared reader."""

import errno
import json
import os
import subprocess
import uuid

import numpy as np
import pytest
import torch

from orchestrator.run.io import DiskFullError, TornFileError, atomic_save, atomic_write_json, atomic_write_text
from orchestrator.run.ledger import Ledger


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB filesystem (tmpfs; the suite runs as root, as `make test` installs with apt-get)."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert p.returncode == 0, f"this test mounts a small tmpfs and needs root: {p.stderr.strip()}"
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_disk_leaves_the_old_file_whole_and_says_so(small_disk):
    state = small_disk / "state.json"
    atomic_write_json(state, {"epoch": 1})
    with pytest.raises(DiskFullError, match=r"state.json: the disk is full \([\d,]+ bytes free in .*; it had written"):
        atomic_write_text(state, "x" * 200_000)
    assert json.loads(state.read_text()) == {"epoch": 1}  # the old file, whole
    ckpt = small_disk / "checkpoint.pt"
    with pytest.raises(DiskFullError, match="checkpoint.pt: the disk is full"):  # torch.save's own write error
        atomic_save({"w": torch.zeros(50_000)}, ckpt)
    assert not ckpt.exists() and [p.name for p in small_disk.iterdir()] == ["state.json"]  # no temp file left
    atomic_save({"w": torch.zeros(100)}, ckpt)  # room for a small one: writes go on
    assert torch.load(ckpt, weights_only=True)["w"].shape == (100,)


def test_a_ledger_on_a_full_disk_keeps_what_it_had(small_disk):
    """Appends to a candidate's file fail in one line once the disk is full; the lines before stand, the
    torn part is skipped, and after space is freed the next append lands on a line of its own."""
    ledger = Ledger(small_disk / "ledger")
    cands = [{"lr": 0.1}]
    ledger.open({"x": 1}, cands)
    ledger.epoch(0, dict(epoch=1, val_acc=0.5))
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # the rest of the disk, taken by someone else
    try:
        while True:
            os.write(fd, b"f" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    with pytest.raises(DiskFullError, match=r"c000.jsonl: the disk is full .*it needed \d+ bytes"):
        for e in range(2, 200):  # a few lines may still fit in the last block
            ledger.epoch(0, dict(epoch=e, val_acc=0.5 + e / 1000, note="x" * 200))
    rows = Ledger(small_disk / "ledger").entries(cands)[0].rows
    assert rows[0] == dict(epoch=1, val_acc=0.5) and all(r["epoch"] == k for k, r in enumerate(rows, 1))
    filler.unlink()  # space freed: the same command goes on
    ledger.ended(0, "finished")
    assert Ledger(small_disk / "ledger").entries(cands)[0].end == "finished"


def test_a_torn_record_is_named_in_one_line(tmp_path, capsys):
    """A run's record cut short (a trial's params.json, the ledger's plan) is named with what to do, through
    the shared reader: never a traceback, never a silent wrong number."""
    from orchestrator.cli import main
    from orchestrator.run.io import TornFileError, read_json

    torn = tmp_path / "params.json"
    torn.write_text('{"_variant": {"lr": 0.0')
    with pytest.raises(TornFileError, match=r"params.json: not whole JSON .* delete it and run the same command"):
        read_json(torn)
    run = tmp_path / "runs" / "r"
    trial = run / "distill_trainable_abc_00000"
    trial.mkdir(parents=True)
    (run / "kdsweep_config.json").write_text(json.dumps({"train": {"epochs": 2}, "sweep": {}}))
    (trial / "result.json").write_text('{"epoch": 1, "val_acc": 0.5}\n')
    (trial / "params.json").write_text('{"_variant": {"lr"')
    assert main(["results", str(run)]) == 2
    err = capsys.readouterr().err
    assert "params.json: not whole JSON" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    ledger = Ledger(tmp_path / "ledger")
    ledger.open({"x": 1}, [{"lr": 0.1}])
    (tmp_path / "ledger" / "plan.json").write_text('{"identity": {"x"')
    with pytest.raises(TornFileError, match="plan.json: not whole JSON"):
        Ledger(tmp_path / "ledger").open({"x": 1}, [{"lr": 0.1}])


def test_a_torn_tune_state_is_set_aside_for_the_one_before(tmp_path, said):
    """Tune resumes from the newest experiment state: one cut short by a crash is set aside with its session's
    searcher state, so the rerun resumes from the session before; with no whole state left, one line says
    what to do."""
    from orchestrator.run.io import TornFileError
    from orchestrator.sweep.tune_run import set_aside_torn_state

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "experiment_state-2026-12-07_10-00-00.json").write_text('{"trials": []}')
    (exp / "basic-variant-state-2026-12-07_10-00-00.json").write_text("{}")
    (exp / "experiment_state-2026-12-07_11-00-00.json").write_text('{"tri')  # the newest, torn
    (exp / "basic-variant-state-2026-12-07_11-00-00.json").write_text("{}")
    moved = set_aside_torn_state(exp)
    assert sorted(p.name for p in moved) == [
        "basic-variant-state-2026-12-07_11-00-00.json",
        "experiment_state-2026-12-07_11-00-00.json",
    ]
    assert sorted(p.name for p in exp.glob("experiment_state-*.json")) == ["experiment_state-2026-12-07_10-00-00.json"]
    assert (exp / "experiment_state-2026-12-07_11-00-00.json.torn").is_file()
    assert any("is torn" in m and "resuming from the state before it" in m for m in said)
    assert set_aside_torn_state(exp) == []  # whole: nothing to do
    (exp / "experiment_state-2026-12-07_10-00-00.json").write_text("")  # the last one torn too
    with pytest.raises(TornFileError, match=r"experiment_state-2026-12-07_10-00-00.json: not whole JSON.*--force"):
        set_aside_torn_state(exp)


def test_a_cache_build_on_a_full_disk_stops_in_one_line_and_resumes(tmp_path, small_split, monkeypatch):
    """The teacher's cache fills the disk mid-build: one line names the chunk and the space; the chunks
    written before stand (no partial file is read as whole), and once space is freed the same build computes
    only the chunks it lacks and writes the cache whole."""
    from orchestrator.config import Preprocess
    from orchestrator.teacher import cache
    from students.teachers import build_resnet
    from trainables.augment import ViewSpec

    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert p.returncode == 0, f"this test mounts a small tmpfs and needs root: {p.stderr.strip()}"
    try:
        monkeypatch.setattr(cache, "CHUNK_IMAGES", 64)  # 256 images: 4 chunks of 64 x 18 views (~23 KB each)
        torch.manual_seed(0)
        model, pre, spec = build_resnet("resnet10").eval(), Preprocess(channels=3), ViewSpec(1, True)
        x, y = small_split.train_x[:256], small_split.train_y[:256]
        filler = mnt / "filler"
        filler.write_bytes(b"f" * (512 * 1024 - 60 * 1024))  # room for about two chunks
        with pytest.raises(DiskFullError, match=r"\.partial/0000\d\.npy: the disk is full"):
            cache.teacher_logits(model, "sha", pre, x, y, spec, mnt / "cache")
        written = sorted(q.name for q in (mnt / "cache").glob("*.partial/*.npy"))
        assert 1 <= len(written) < 4 and not list((mnt / "cache").glob("logits-*.npy"))
        filler.unlink()  # space freed: the same build goes on
        logits, forwards, info = cache.teacher_logits(model, "sha", pre, x, y, spec, mnt / "cache")
        assert forwards == (256 - 64 * len(written)) * 18 and logits.shape == (256, 18, 10) and not info["hit"]
        whole, _, _ = cache.teacher_logits(model, "sha", pre, x, y, spec, tmp_path / "elsewhere")
        assert np.array_equal(logits, whole)  # the resumed cache is the one a build in one go writes
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.slow
def test_a_sweep_whose_disk_fills_says_so_in_one_line_and_resumes(ray_local, tiny_teacher, tmp_path):
    """A sweep's storage fills while Tune writes checkpoints, its state and the trials' records: whichever
    write breaks first, the run ends in one line naming the disk (DiskFullError), never Tune's traceback;
    after space is freed the same command finishes the run, or, where the disk cut Tune's only state short,
    says so in one line and `--force` starts it over."""
    from orchestrator.sweep.driver import run_sweep
    from tests.conftest import smoke_config

    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert p.returncode == 0, f"this test mounts a small tmpfs and needs root: {p.stderr.strip()}"
    try:
        cfg = smoke_config(
            tmp_path,
            "t_full",
            {
                "sweep.storage": str(mnt / "runs"),
                "teacher.mode": "clean",
                "data.train_limit": 256,
                "data.val_limit": 128,
                "train.epochs": 4,
                "train.student": "resdw_w24_d111",
                "search_space": {},
                "trials": [{"lr": 0.05}, {"lr": 0.02}],
                "sweep.grace_period": 4,
            },
        )
        filler = mnt / "filler"
        filler.write_bytes(b"f" * (2 * 1024 * 1024 - 300 * 1024))  # room for the claim and a little more
        with pytest.raises(DiskFullError, match="the disk"):
            run_sweep(cfg, teacher_path=str(tiny_teacher))
        filler.unlink()
        try:
            run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher))
        except TornFileError as e:  # Tune's only state was cut short by the disk: the line says to start over
            assert "experiment_state" in str(e) and "--force" in str(e)
            run_dir = run_sweep(cfg, teacher_path=str(tiny_teacher), force=True)
        assert (run_dir / "kdsweep_meta.json").is_file()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
