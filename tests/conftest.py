"""Shared fixtures: small real data, a tiny teacher made here, one local Ray for the Ray tests."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(2)


@pytest.fixture
def said():
    """What kdsweep logs during the test (its `orchestrator` and `trainables` loggers at INFO), one message
    an item."""
    from orchestrator.logs import LOGGERS

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield lines
    for lg, level in zip(loggers, levels):
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.fixture
def rung_rule(tmp_path, monkeypatch):
    """write(frac, rf): a recorded regret rule (bench/search_regret.py's form) with its first rung at
    fraction `frac` of the schedule, read by grace_period / reduction_factor auto for the test's length."""
    import json

    from orchestrator import rungs

    def write(frac: float, rf: int = 3):
        path = tmp_path / "rungs.json"
        rule = dict(
            grace_frac=frac,
            reduction_factor=rf,
            regret_mean=0.001,
            regret_p90=0.003,
            cost_frac=0.5,
            bound=0.0017,
            regret_frac=0.5,
            n=12,
            length=40,
            held_out=dict(regret_mean=0.0012),
            record="experiments/search_regret",
        )
        path.write_text(json.dumps(rule))
        monkeypatch.setattr(rungs, "RULE_FILE", path)
        return path

    return write


@pytest.fixture(scope="session")
def small_split():
    from orchestrator.data import load_split

    return load_split(val_size=5000, seed=0, train_limit=384, val_limit=200)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A resnet10 trained for one epoch on 384 images, saved like a release (fp16 + JSON sidecar)."""
    from orchestrator.config import from_dict
    from orchestrator.teacher.config import TeacherTrainConfig
    from orchestrator.teacher.train import train_local

    d = tmp_path_factory.mktemp("teacher")
    cfg = from_dict(
        TeacherTrainConfig,
        dict(arch="resnet10", data=dict(train_limit=384, val_limit=200), optim=dict(epochs=1, batch_size=64, lr=0.05)),
    )
    return train_local(cfg, d / "run", d / "tiny.pt")


def start_local_ray():
    import ray

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}
    )
    return ray


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for every test that needs it (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture
def cluster():
    """A head without CPUs (the driver's node, as on a real cluster) and two 1-CPU worker nodes."""
    import ray
    from ray.cluster_utils import Cluster

    was_up = ray.is_initialized()
    if was_up:  # another test's local Ray: this test needs its own cluster
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False))
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()
    if was_up:
        start_local_ray()


RAY_MODULES = {"test_ray.py", "test_cluster.py", "test_launch.py", "test_chaos.py"}
STARTS_RAY = RAY_MODULES | {"test_s3.py"}  # test_s3's sweeps start a local Ray in their own processes


def pytest_collection_modifyitems(config, items):
    """Tiers: `ray` (starts Ray: a local instance, simulated nodes or a head) and `slow` (a subprocess or a
    training run of more than a few seconds); `make test-fast` runs the rest. Under pytest-xdist (`make test`
    runs two workers) every test that starts Ray is in one group, on one worker, so that one Ray at a time
    holds the CPUs; the rest spreads over both while it waits on Ray."""
    for item in items:
        ray = item.path.name in RAY_MODULES or "ray_local" in getattr(item, "fixturenames", ())
        if ray:
            item.add_marker(pytest.mark.ray)
        if ray or item.path.name in STARTS_RAY:
            item.add_marker(pytest.mark.xdist_group("ray"))


def smoke_config(tmp: Path, name: str, overrides: dict | None = None):
    """configs/smoke.yaml as a test runs it: named `name`, its runs and teacher cache under `tmp`, in
    channels_last (the layout probes are tested where they are the subject, and cost every other sweep a
    few seconds), then `overrides` (dotted keys, as --set)."""
    from orchestrator.config import load_sweep_config

    base = {
        "name": name,
        "sweep.storage": str(tmp / "runs"),
        "teacher.cache_dir": str(tmp / "cache"),
        "train.layout": "channels_last",
        "teacher.layout": "channels_last",
    }
    return load_sweep_config(ROOT / "configs" / "smoke.yaml", {**base, **(overrides or {})})
