"""The teacher's files: load any reasonable checkpoint (`load_teacher`; a student as an ensemble member,
`load_member`), key its logits (`identity`) and write a release (`release_weights`). The preprocessing a
teacher expects travels with it in a JSON sidecar next to the weights (`<weights>.json`). Its training loop
is trainables/teacher_train.py; inference, trainables/infer.py."""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from orchestrator.config import Preprocess
from orchestrator.errors import UserError
from orchestrator.run.io import atomic_save, sha256_file
from orchestrator.teacher import history
from orchestrator.teacher.config import TeacherTrainConfig
from students import rebuild
from students.teachers import CIFAR_ARCHS, NUM_CLASSES, TEACHER_ARCHS, build_resnet
from trainables.infer import MEMBER_INFER_BATCH

log = logging.getLogger(__name__)


class TeacherLoadError(UserError):
    """A teacher checkpoint that cannot be used; the message says why and what was expected."""


@dataclass(frozen=True)
class TeacherInfo:
    arch: str
    preprocess: Preprocess
    sha256: str
    path: str
    params: int
    infer_batch: int | None = None  # the loader's own inference batch (a student member's); None: teacher.batch_size


def _strip(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):  # DataParallel/DDP, torch.compile
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def _unwrap(obj, path) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return _unwrap(obj[key], path)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TeacherLoadError(
            f"{path}: holds no state_dict (a dict of tensors, or one under 'state_dict'/"
            "'model'); save the teacher with torch.save(model.state_dict(), path)"
        )
    return obj


def read_state_dict(path: str | Path) -> dict:
    """torch.load(weights_only=True) with an error for each way a file can be wrong."""
    path = Path(path)
    if path.is_dir():
        raise TeacherLoadError(
            f"teacher checkpoint {path} is a directory; pass the weights file in it (e.g. models/teacher/resnet50.pt)"
        )
    if not path.is_file():
        raise TeacherLoadError(
            f"teacher checkpoint {path} not found; train one with `kdsweep teacher train` "
            "or pass --teacher PATH to a ResNet-50 state_dict" + history.hint(path)
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise TeacherLoadError(f"{path} is empty (0 bytes): an interrupted copy or save? Copy or train it again")
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip archive, or a legacy pickle
        raise TeacherLoadError(
            f"{path} is not a PyTorch checkpoint: it is neither a torch.save zip archive nor "
            f"a pickle (it starts with {head!r}); pass the .pt file that torch.save wrote"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e) and "global" not in str(e):  # garbage after a pickle's first byte
            raise TeacherLoadError(
                f"{path}: not a readable PyTorch checkpoint (a damaged pickle: {str(e).splitlines()[-1][:200]})"
            ) from None
        raise TeacherLoadError(
            f"{path}: refused: unpickling it would run code or build objects other than "
            f"tensors ({str(e).splitlines()[0][:200]}). Re-save only the weights with "
            "torch.save(model.state_dict(), path)."
        ) from None
    except Exception as e:  # zip, EOF, legacy-pickle errors: all mean "not a checkpoint we can read"
        raise TeacherLoadError(
            f"{path}: not a readable PyTorch checkpoint (truncated or another format: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    return _strip(_unwrap(obj, path))


def _check_layout(sd: dict, path) -> tuple[str, int]:
    """-> (arch, in_chans) or TeacherLoadError naming what differs."""
    fc = sd.get("fc.weight")
    if fc is not None and fc.dim() == 2 and fc.shape[0] != NUM_CLASSES:
        raise TeacherLoadError(
            f"{path}: the final layer has {fc.shape[0]} classes; Fashion-MNIST needs "
            f"{NUM_CLASSES} (fc.weight {tuple(fc.shape)})"
        )
    conv1 = sd.get("conv1.weight")
    in_chans = conv1.shape[1] if conv1 is not None and conv1.dim() == 4 else 3
    if in_chans not in (1, 3):
        raise TeacherLoadError(f"{path}: conv1 takes {in_chans} channels; expected 1 or 3")
    keys = {k for k in sd if not k.endswith("num_batches_tracked")}
    best = None
    for arch in TEACHER_ARCHS:
        ref = build_resnet(arch, in_chans).state_dict()
        ref_keys = {k for k in ref if not k.endswith("num_batches_tracked")}
        if keys == ref_keys:
            bad = [k for k in keys if tuple(sd[k].shape) != tuple(ref[k].shape)]
            if not bad:
                return arch, in_chans
            raise TeacherLoadError(
                f"{path}: {arch} layout but {bad[0]} has shape {tuple(sd[bad[0]].shape)}, "
                f"expected {tuple(ref[bad[0]].shape)}"
            )
        diff = len(keys ^ ref_keys)
        if best is None or diff < best[0]:
            best = (diff, arch, sorted(ref_keys - keys), sorted(keys - ref_keys))
    _, arch, missing, unexpected = best
    raise TeacherLoadError(
        f"{path}: not a teacher of a known layout (expected torchvision's resnet50(num_classes=10) or one of "
        f"{', '.join(CIFAR_ARCHS)}; "
        f"closest {arch}: {len(missing)} keys missing e.g. {missing[:3]}, {len(unexpected)} unexpected "
        f"e.g. {unexpected[:3]})"
    )


def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def load_teacher(
    path: str | Path, mean: float | None = None, std: float | None = None, device: str = "cpu"
) -> tuple[nn.Module, TeacherInfo]:
    """A teacher in eval mode (fp32) and what it expects as input.

    mean/std: given explicitly (CLI, config) or read from the sidecar JSON that
    `kdsweep teacher train` writes next to the weights; an error when neither.
    """
    sd = read_state_dict(path)
    arch, in_chans = _check_layout(sd, path)
    side = sidecar_path(path)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    mean = mean if mean is not None else meta.get("preprocess", {}).get("mean")
    std = std if std is not None else meta.get("preprocess", {}).get("std")
    if mean is None or std is None:
        raise TeacherLoadError(
            f"{path}: its input normalization is unknown: no {side.name} beside it. Give it "
            "in the config (teacher.mean, teacher.std) or with --teacher-mean/--teacher-std "
            "(the given ResNet-50 uses 0.2860 and 0.3530)"
        )
    model = build_resnet(arch, in_chans)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    # channels_last: faster ResNet-50 inference on CPU, the same logits (measured: bench/teacher_variants.py)
    model.eval().to(device, memory_format=torch.channels_last)
    info = TeacherInfo(
        arch,
        Preprocess(
            mean=float(mean), std=float(std), channels=in_chans, size=int(meta.get("preprocess", {}).get("size", 28))
        ),
        sha256_file(path),
        str(Path(path).resolve()),
        sum(p.numel() for p in model.parameters()),
    )
    return model, info


def load_member(path: str | Path, device: str = "cpu") -> tuple[nn.Module, TeacherInfo]:
    """A member of a teacher ensemble (teacher.ensemble) in eval mode and what it expects as input: a
    student checkpoint (a trial's checkpoint.pt or an export's student.pt; `arch` is the student's name)
    or a teacher checkpoint (load_teacher)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(state, dict) and "student" in state and "state_dict" in state):
        return load_teacher(path, device=device)
    model = rebuild(state).to(device)
    pre = Preprocess(
        mean=float(state["config"]["mean"]), std=float(state["config"]["std"]), channels=model.in_chans, size=28
    )
    return model, TeacherInfo(
        state["student"],
        pre,
        sha256_file(path),
        str(Path(path).resolve()),
        sum(p.numel() for p in model.parameters()),
        infer_batch=MEMBER_INFER_BATCH,
    )


def identity(sha256: str, precision: str) -> str:
    """What a cache keys a teacher's logits by: its weights, and the precision its forwards ran in (fp32 keeps
    the bare sha256, so caches built before teacher.precision keep their keys)."""
    return sha256 if precision == "fp32" else f"{sha256}+{precision}"


def release_weights(state_dict: dict, out: Path, cfg: TeacherTrainConfig, extra: dict) -> Path:
    """Write `<out>` (fp16 state_dict, ~47 MB for ResNet-50) and its JSON sidecar."""
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in state_dict.items()}
    atomic_save(sd, out)
    meta = dict(
        arch=cfg.arch, num_classes=NUM_CLASSES, preprocess=asdict(cfg.preprocess), sha256=sha256_file(out), **extra
    )
    sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def evaluate_teacher(checkpoint, mean=None, std=None, data_dir=None, val_size: int = 5000, split_seed: int = 0) -> dict:
    """A teacher's torchinfo parameter count, validation and test accuracy, identity and how it was trained
    (from its sidecar, where it has one): what `kdsweep teacher eval` prints and records."""
    import torchinfo

    from orchestrator.data import load_split, load_test
    from trainables.infer import accuracy, predict_logits

    model, info = load_teacher(checkpoint, mean, std)
    params = torchinfo.summary(
        model, input_size=(1, info.preprocess.channels, 28, 28), verbose=0, device="cpu"
    ).total_params
    s = load_split(data_dir, val_size, split_seed)
    tx, ty = load_test(data_dir)
    side = sidecar_path(checkpoint)
    trained = json.loads(side.read_text()) if side.is_file() else {}
    keep = ("best_epoch", "epochs", "wall_s", "machine", "trained_with", "recipe")
    return dict(
        checkpoint=str(checkpoint),
        arch=info.arch,
        params=params,
        val_acc=accuracy(predict_logits(model, s.val_x, info.preprocess), s.val_y),
        test_acc=accuracy(predict_logits(model, tx, info.preprocess), ty),
        val_images=len(s.val_x),
        test_images=len(tx),
        sha256=info.sha256,
        preprocess=info.preprocess.__dict__,
        **{k: trained[k] for k in keep if k in trained},
    )
