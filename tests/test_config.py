from pathlib import Path

import pytest

from orchestrator.config import ConfigError, SweepConfig, TeacherTrainConfig, from_dict, load_sweep_config, \
    load_teacher_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["smoke", "sweep", "full"])
def test_shipped_sweep_configs_load(name):
    cfg = load_sweep_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.students()


@pytest.mark.parametrize("name", ["teacher", "teacher_cycle2"])
def test_teacher_configs_load(name):
    cfg = load_teacher_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.arch == "resnet50" and cfg.data.val_size == 5000


@pytest.mark.parametrize("raw, match", [
    ({"name": "x", "trian": {}}, "unknown key trian"),
    ({"name": "x", "train": {"lerning_rate": 0.1}}, "unknown key train.lerning_rate"),
    ({"name": "x", "train": {"lr": "fast"}}, "train.lr: expected float"),
    ({"name": "x", "train": {"epochs": 0}}, "epochs must be >= 1"),
    ({"name": "x", "train": {"loss": "kdd"}}, "train.loss: 'kdd' is not allowed"),
    ({"name": "x", "search_space": {"lr": {"loguniform": [0, 1]}}}, "bounds must be > 0"),
    ({"name": "x", "search_space": {"lr": {"between": [0, 1]}}}, "write exactly one of"),
    ({"name": "x", "search_space": {"colour": {"choice": [1]}}}, "not a train key"),
    ({"name": "x", "search_space": {"loss": {"grid": ["kd", "dkd"]}}}, "value 'dkd' is invalid"),
    ({"name": "x", "sweep": {"reduction_factor": 1}}, "reduction_factor must be >= 2"),
    ({"train": {}}, "missing key name"),
])
def test_bad_configs_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(SweepConfig, raw)


def test_overrides_and_types():
    cfg = load_sweep_config(ROOT / "configs" / "smoke.yaml", {"train.epochs": 3, "train.lr": "1e-2"})
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(TeacherTrainConfig, {"optim": {"epochs": 2.5}})


def test_run_dir_refuses_another_config(tmp_path):
    import dataclasses
    from orchestrator.sweep import _claim_run_dir
    cfg = load_sweep_config(ROOT / "configs" / "smoke.yaml")
    _claim_run_dir(str(tmp_path), cfg)
    _claim_run_dir(str(tmp_path), cfg)  # the same config: resuming is fine
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=9))
    with pytest.raises(ValueError, match=r"another config \(differs in \['train'\]\)"):
        _claim_run_dir(str(tmp_path), other)
