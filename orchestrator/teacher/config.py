"""configs/teacher.yaml's schema: how `kdsweep teacher train` trains a ResNet (read strictly by
orchestrator/loader.py, like a sweep's config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from orchestrator.config import DataConfig, Preprocess, Views, _check, from_dict, load_yaml
from trainables.config import OptimSettings

Optim = OptimSettings  # a teacher's `optim:` section: the same fields, defaults and checks as a trial's


@dataclass(frozen=True)
class TeacherTrainConfig:
    """configs/teacher.yaml: how `kdsweep teacher train` trains a ResNet."""

    name: str = "teacher"  # the checkpoint's file name under artifacts/teacher/
    arch: Literal[
        "resnet50", "resnet18", "resnet10", "cifar_resnet20", "cifar_resnet32", "cifar_resnet56", "cifar_wrn16_4"
    ] = "resnet50"  # torchvision layouts (resnet10: tiny, for tests) or CIFAR-style ones a CPU can train
    # (students/teachers.py)
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: Preprocess = field(default_factory=Preprocess)
    optim: Optim = field(default_factory=lambda: Optim(lr=0.1, epochs=15))
    augment: Views = field(default_factory=Views)
    label_smoothing: float = 0.1  # on the cross-entropy with the labels
    erase: float = 0.0  # random erasing (Zhong et al. 2017): probability per image
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # bf16: autocast in the train step (auto: where native)
    compile: bool = False  # torch.compile the training step
    init_from: str | None = None  # start from these weights (a second cycle), not from scratch
    kd_from: str | None = None  # a teacher checkpoint distilled into this one (KD, Hinton et al. 2015: its
    # clean-image logits, cached, for every view) plus the labels
    kd_alpha: float = 0.5  # weight of the teacher term
    kd_temperature: float = 4.0  # T of the teacher term
    seed: int = 0  # weights, batch order, augmentation
    workers: int = 1  # Ray Train workers (DDP when > 1)
    use_gpu: bool = False  # each Ray Train worker on a GPU
    cpus_per_worker: int = 2  # torch threads of each worker
    eval_batch_size: int = 256  # = teacher.INFER_BATCH

    def __post_init__(self):
        _check(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        _check(0 <= self.erase <= 1, "erase must be a probability in [0, 1]")
        _check(self.workers >= 1, "workers must be >= 1")
        _check(0 <= self.kd_alpha <= 1, "kd_alpha must be in [0, 1]")
        _check(self.kd_temperature > 0, "kd_temperature must be > 0")


def load_teacher_config(path) -> TeacherTrainConfig:
    return from_dict(TeacherTrainConfig, load_yaml(path))
