"""Loading any reasonable teacher checkpoint, and a clear error for every unreasonable one."""

import json
import os
from pathlib import Path

import pytest
import torch

from orchestrator.teacher.model import TeacherLoadError, load_teacher, sidecar_path
from students.teachers import build_resnet

X = torch.rand(2, 3, 28, 28)


@pytest.fixture()
def ref():
    torch.manual_seed(0)
    return build_resnet("resnet10").eval()


def save(obj, path, meta=True):
    torch.save(obj, path)
    if meta:
        sidecar_path(path).write_text(json.dumps({"preprocess": {"mean": 0.5, "std": 0.5}}))
    return path


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module_prefix", "fp16"])
def test_accepted_layouts(ref, tmp_path, wrap):
    sd = ref.state_dict()
    obj = {
        "bare": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "fp16": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()},
    }[wrap]
    model, info = load_teacher(save(obj, tmp_path / "t.pt"))
    assert info.arch == "resnet10" and info.preprocess.mean == 0.5 and info.preprocess.channels == 3
    tol = 5e-2 if wrap == "fp16" else 1e-6
    with torch.no_grad():
        assert torch.allclose(model(X), ref(X), atol=tol)


def test_resnet50_layout_and_param_count(tmp_path):
    path = save(build_resnet("resnet50").state_dict(), tmp_path / "r50.pt")
    _, info = load_teacher(path)
    assert info.arch == "resnet50" and info.params == 23_528_522


def test_one_channel_conv(tmp_path):
    m = build_resnet("resnet10", in_chans=1)
    _, info = load_teacher(save(m.state_dict(), tmp_path / "g.pt"))
    assert info.preprocess.channels == 1


def test_normalization_from_cli_beats_missing_sidecar(ref, tmp_path):
    path = save(ref.state_dict(), tmp_path / "n.pt", meta=False)
    with pytest.raises(TeacherLoadError, match="normalization is unknown"):
        load_teacher(path)
    _, info = load_teacher(path, mean=0.286, std=0.353)
    assert info.preprocess.std == 0.353


def test_wrong_class_count(tmp_path):
    m = build_resnet("resnet10", num_classes=1000)
    with pytest.raises(TeacherLoadError, match="1000 classes"):
        load_teacher(save(m.state_dict(), tmp_path / "c.pt"))


def test_other_architecture(tmp_path):
    from students import create_student

    with pytest.raises(TeacherLoadError, match="not a teacher of a known layout"):
        load_teacher(save(create_student("starter_model_1").state_dict(), tmp_path / "s.pt"))


def test_truncated_file(ref, tmp_path):
    path = save(ref.state_dict(), tmp_path / "t.pt")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(TeacherLoadError, match="truncated"):
        load_teacher(path)


def test_not_a_checkpoint(tmp_path, tiny_teacher):
    """Each way a teacher file can be wrong gets its own true diagnosis."""
    import pickle

    cases = {
        "notes.pt": (b"hello", "neither a torch.save zip archive nor a pickle"),
        "empty.pt": (b"", "is empty"),
        "noise.pt": (bytes(range(7, 250)) * 20, "neither a torch.save zip archive nor a pickle"),
        "damaged.pt": (b"\x80\x02" + bytes(range(90, 250)), "a damaged pickle"),
        "truncated.pt": (tiny_teacher.read_bytes()[:5000], "not a readable PyTorch checkpoint"),
        "list.pt": (pickle.dumps([1, 2, 3], protocol=2), "not a readable PyTorch checkpoint"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(TeacherLoadError, match=message) as e:
            load_teacher(tmp_path / name)
        assert "refused" not in str(e.value), name  # none of these is an unsafe pickle
    with pytest.raises(TeacherLoadError, match="not found"):
        load_teacher(tmp_path / "missing.pt")
    with pytest.raises(TeacherLoadError, match="is a directory"):
        load_teacher(tmp_path)


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {EVIL_MARKER}",))


EVIL_MARKER = "/tmp/kdsweep-evil-pickle-ran"


def test_malicious_pickle_refused(tmp_path):
    if os.path.exists(EVIL_MARKER):
        os.remove(EVIL_MARKER)
    path = save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(TeacherLoadError, match="refused"):
        load_teacher(path)
    assert not os.path.exists(EVIL_MARKER)


def test_released_teacher_if_present():
    """The committed release loads as a torchvision resnet50 with its sidecar's preprocessing."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "models" / "teacher" / "resnet50.pt"
    if not path.is_file():
        pytest.skip("no released teacher in this checkout")
    _, info = load_teacher(path)
    assert info.arch == "resnet50" and info.params == 23_528_522 and info.preprocess.channels == 3


@pytest.mark.parametrize(
    "arch, params, macs_m",
    [
        ("cifar_resnet20", 272_474, 31.2),
        ("cifar_resnet32", 466_906, 52.9),
        ("cifar_resnet56", 855_770, 96.3),
        ("cifar_wrn16_4", 2_749_786, 300.6),
    ],
)
def test_cifar_teachers_build_count_and_load_back(tmp_path, arch, params, macs_m):
    """The CPU-trainable teachers: their torchinfo counts at 28x28, and a saved one loads back as itself
    (the loader tells the layouts apart) with the same logits."""
    import torchinfo

    torch.manual_seed(0)
    m = build_resnet(arch).eval()
    s = torchinfo.summary(m, input_size=(1, 3, 28, 28), verbose=0)
    assert s.total_params == params and round(s.total_mult_adds / 1e6, 1) == macs_m
    model, info = load_teacher(save(m.state_dict(), tmp_path / "c.pt"))
    assert info.arch == arch and info.params == params
    with torch.no_grad():
        assert torch.allclose(model(X), m(X), atol=1e-4)


def test_a_cifar_teacher_trains_in_chunks_and_resumes(tmp_path, said):
    """A training of hours as chunks: a chunk stops after the epoch that passes its minutes and writes no
    weights; the same call goes on from the next epoch (not from the first) and releases at the end."""
    from orchestrator.config import from_dict
    from orchestrator.teacher.config import TeacherTrainConfig
    from orchestrator.teacher.train import history_path, train_local

    cfg = from_dict(
        TeacherTrainConfig,
        dict(
            arch="cifar_resnet20",
            data=dict(train_limit=256, val_limit=128),
            optim=dict(epochs=2, batch_size=64, lr=0.05),
            erase=0.5,
        ),
    )
    out = tmp_path / "ta.pt"
    assert train_local(cfg, tmp_path / "run", out, chunk_minutes=0) is None and not out.exists()
    assert any("chunk over after epoch 1/2" in m for m in said)
    said.clear()
    assert train_local(cfg, tmp_path / "run", out, chunk_minutes=0) == out
    assert any("resumed after epoch 1/2" in m for m in said)
    assert [h["epoch"] for h in json.loads(history_path(out).read_text())] == [1, 2]
    _, info = load_teacher(out)
    assert info.arch == "cifar_resnet20" and info.preprocess.size == 28


def test_a_teacher_distils_into_the_assistant(tmp_path, said, tiny_teacher, monkeypatch):
    """kd_from: the teacher's clean logits (through the logits cache) are the KD targets of every step, and
    its cache is reused by the next training."""
    import trainables.teacher_train as tm
    from orchestrator.config import from_dict
    from orchestrator.teacher.config import TeacherTrainConfig
    from orchestrator.teacher.train import train_local

    calls = []
    real = tm.kd
    monkeypatch.setattr(tm, "kd", lambda s, t, y, **k: calls.append((t.shape, k["alpha"])) or real(s, t, y, **k))
    (tmp_path / "configs").mkdir()  # a checkout of its own: the cache goes to tmp_path/cache
    monkeypatch.chdir(tmp_path)
    cfg = from_dict(
        TeacherTrainConfig,
        dict(
            arch="cifar_resnet20",
            data=dict(train_limit=128, val_limit=64),
            optim=dict(epochs=1, batch_size=64, lr=0.05),
            kd_from=str(tiny_teacher),
            kd_alpha=0.7,
        ),
    )
    assert train_local(cfg, tmp_path / "run", tmp_path / "ta.pt") == tmp_path / "ta.pt"
    assert calls == [((64, 10), 0.7)] * 2 and any("distilling resnet10" in m for m in said)
    assert len(list((tmp_path / "cache").glob("logits-*.npy"))) == 1


def test_a_teacher_kept_in_git_history_is_restored_checked_and_named_when_missing(tmp_path):
    """kdsweep teacher restore: the bytes from the commit that holds them, checked against the release's
    sha256; a config naming the missing file is told that command."""
    import hashlib
    import subprocess

    from orchestrator.errors import UserError
    from orchestrator.teacher.history import hint, restore
    from orchestrator.teacher.model import TeacherLoadError, read_state_dict

    teachers = tmp_path / "models" / "teacher"
    teachers.mkdir(parents=True)
    data = b"weights" * 100
    (teachers / "t.pt").write_bytes(data)
    (teachers / "t.json").write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest()}))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "t"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (teachers / "t.pt").unlink()
    assert restore("t", root=tmp_path, table={"t": commit}).read_bytes() == data
    with pytest.raises(UserError, match="no teacher 'u' is kept"):
        restore("u", root=tmp_path, table={"t": commit})
    (teachers / "t.pt").unlink()
    (teachers / "t.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(UserError, match="does not match the sha256"):
        restore("t", root=tmp_path, table={"t": commit})
    assert not (teachers / "t.pt").exists()
    assert "kdsweep teacher restore resnet50_x56" in hint("models/teacher/resnet50_x56.pt") and not hint("x.pt")
    with pytest.raises(TeacherLoadError, match="kdsweep teacher restore resnet50_x56"):
        read_state_dict(tmp_path / "resnet50_x56.pt")


def test_a_teacher_chunk_saved_before_the_shared_training_loop_resumes_to_the_same_weights():
    """tests/data/legacy_teacher_chunk.pt was saved by fit_teacher before it ran on trainables/engine.py
    (tests/data/make_legacy_teacher.py, at 137e255): resumed now, its second epoch ends on the weights an
    uninterrupted run of today's code reaches."""
    from orchestrator.config import from_dict
    from orchestrator.data import load_split
    from orchestrator.teacher.config import TeacherTrainConfig
    from trainables.teacher_train import fit_teacher

    cfg = {"name": "legacy", "arch": "cifar_resnet20", "optim": {"epochs": 2, "batch_size": 64}, "precision": "fp32"}
    cfg = from_dict(TeacherTrainConfig, cfg)
    s = load_split(val_size=5000, seed=0, train_limit=256, val_limit=64)
    old = torch.load(Path(__file__).parent / "data" / "legacy_teacher_chunk.pt", weights_only=False)
    ends, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # as the chunk was written: a convolution's sums depend on the thread count
    try:
        for resume in (old, None):
            saved = []
            keep = saved.append
            fit_teacher(cfg, s.train_x, s.train_y, s.val_x, s.val_y, resume=resume, save=lambda st, m, b, k=keep: k(st))
            assert saved[-1]["epoch"] == 1
            ends.append(saved[-1]["model"])
    finally:
        torch.set_num_threads(threads)
    # equal up to rounding: the chunk's first epoch ran on the CPU that wrote it, whose kernels sum in another
    # order (2e-7 apart when resumed on a Zen 4; a state restored wrongly is
    # orders of magnitude further off)
    assert all(torch.allclose(ends[0][k].double(), ends[1][k].double(), rtol=0, atol=1e-5) for k in ends[1])
