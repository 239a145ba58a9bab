"""Loading any reasonable teacher checkpoint, and a clear error for every unreasonable one."""
import json
import os

import pytest
import torch

from orchestrator.teacher.model import TeacherLoadError, build_resnet, load_teacher, sidecar_path

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
    obj = {"bare": sd, "state_dict": {"state_dict": sd, "epoch": 3}, "model": {"model": sd},
           "module_prefix": {f"module.{k}": v for k, v in sd.items()},
           "fp16": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}}[wrap]
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
    with pytest.raises(TeacherLoadError, match="not a torchvision ResNet"):
        load_teacher(save(create_student("seed_model_1").state_dict(), tmp_path / "s.pt"))


def test_truncated_file(ref, tmp_path):
    path = save(ref.state_dict(), tmp_path / "t.pt")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(TeacherLoadError, match="truncated"):
        load_teacher(path)


def test_not_a_checkpoint(tmp_path, tiny_teacher):
    """Each way a teacher file can be wrong gets its own true diagnosis."""
    import pickle
    cases = {"notes.pt": (b"hello", "neither a torch.save zip archive nor a pickle"),
             "empty.pt": (b"", "is empty"),
             "noise.pt": (bytes(range(7, 250)) * 20, "neither a torch.save zip archive nor a pickle"),
             "damaged.pt": (b"\x80\x02" + bytes(range(90, 250)), "a damaged pickle"),
             "truncated.pt": (tiny_teacher.read_bytes()[:5000], "not a readable PyTorch checkpoint"),
             "list.pt": (pickle.dumps([1, 2, 3], protocol=2), "not a readable PyTorch checkpoint")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(TeacherLoadError, match=message) as e:
            load_teacher(tmp_path / name)
        assert "refused" not in str(e.value), name   # none of these is an unsafe pickle
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
