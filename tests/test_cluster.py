"""Several Ray nodes on this machine (ray.cluster_utils.Cluster, loopback only): the teacher cache built by
actors on every node, a sweep spread over two worker nodes, and a worker node lost mid-trial."""

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import load_sweep_config
from orchestrator.run.trial import result_lines
from tests.conftest import ROOT


def test_cache_on_the_cluster_equals_the_local_build(said, cluster, tiny_teacher, small_split, tmp_path, monkeypatch):
    from orchestrator.teacher import cache
    from orchestrator.teacher.cache_ray import ray_runner
    from orchestrator.teacher.model import load_teacher
    from trainables.augment import ViewSpec

    monkeypatch.setattr(cache, "CHUNK_IMAGES", 64)  # 384 images -> 6 chunks for 2 actors
    model, info = load_teacher(tiny_teacher)
    spec, x, y = ViewSpec(1, True), small_split.train_x, small_split.train_y
    local, n_local, _ = cache.teacher_logits(model, info.sha256, info.preprocess, x, y, spec, tmp_path / "a")
    said.clear()
    runner = ray_runner(model, info.arch, info.preprocess.channels, x, spec, info.preprocess, 256)

    def dies_after_two(missing):  # a build interrupted after 2 chunks...
        for i, item in enumerate(runner(missing)):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        cache.teacher_logits(model, info.sha256, info.preprocess, x, y, spec, tmp_path / "b", runner=dies_after_two)
    remote, n_remote, _ = cache.teacher_logits(
        model, info.sha256, info.preprocess, x, y, spec, tmp_path / "b", runner=runner
    )
    assert n_remote == (384 - 2 * 64) * 18 and n_local == 384 * 18  # ...resumes with the 4 missing chunks
    assert any("on 2 Ray actors" in s for s in said)
    assert remote.dtype == np.float16 and remote.shape == local.shape
    ulp = np.spacing(np.abs(local).astype(np.float16)).astype(np.float32)
    assert (np.abs(remote.astype(np.float32) - local.astype(np.float32)) <= ulp).all()  # fp16 rounding at most
    # teacher.precision bf16 reaches the actors: their chunks are the driver's bf16 forwards, not fp32 ones
    from trainables.infer import in_precision

    few, fy = x[:64], y[:64]
    bf16_local, _, _ = cache.teacher_logits(
        in_precision(model, "bf16"), "k", info.preprocess, few, fy, spec, tmp_path / "c"
    )
    remote_bf16 = ray_runner(
        model, info.arch, info.preprocess.channels, few, spec, info.preprocess, 256, precision="bf16"
    )
    bf16_remote, _, _ = cache.teacher_logits(
        model, "k", info.preprocess, few, fy, spec, tmp_path / "d", runner=remote_bf16
    )
    assert np.abs(bf16_remote.astype(np.float32) - bf16_local.astype(np.float32)).max() <= 2 * ulp.max()
    assert not np.array_equal(bf16_remote, local[:64])


def _sweep_cfg(tmp_path, name, **over):
    return load_sweep_config(
        ROOT / "configs" / "smoke.yaml",
        {
            "name": name,
            "sweep.storage": str(tmp_path / "runs"),
            "teacher.cache_dir": str(tmp_path / "cache"),
            "teacher.mode": "clean",
            "teacher.build": "cluster",
            "data.train_limit": 512,
            "data.val_limit": 128,
            "search_space": {},
            "train.student": "resdw_w24_d111",
            "train.layout": "channels_last",  # the layout probes have their own tests
            "teacher.layout": "channels_last",
            "sweep.max_concurrent_trials": 2,
            "sweep.max_failures": 2,
            **over,
        },
    )


def test_sweep_on_two_nodes_and_a_lost_node(cluster, tiny_teacher, tmp_path):
    """Two trials run side by side, one per worker node. The node under one of them is removed after its
    second epoch: that trial resumes from its checkpoint on the other node and nothing finished is redone."""
    from orchestrator.release.export import export
    from orchestrator.sweep.driver import run_sweep

    c, workers = cluster
    cfg = _sweep_cfg(
        tmp_path,
        "t_nodes",
        **{
            "train.epochs": 8,
            "sweep.grace_period": 8,
            "data.train_limit": 1024,
            "trials": [{"lr": 0.05}, {"lr": 0.03}],
        },
    )
    run_dir = tmp_path / "runs" / "t_nodes"
    removed = {}

    def remove_a_node():
        deadline = time.time() + 300
        while time.time() < deadline:
            for rj in run_dir.glob("*/result.json"):
                lines = result_lines(rj)
                if len(lines) >= 2:
                    node_id = lines[-1]["node"]
                    victim = next(w for w in workers if w.node_id.startswith(node_id))
                    removed.update(trial=rj.parent, node=node_id)
                    c.remove_node(victim)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=remove_a_node)
    killer.start()
    run_sweep(cfg, teacher_path=str(tiny_teacher))
    killer.join()
    assert removed, "no trial reached its second epoch"
    table = pd.read_csv(run_dir / "results.csv")
    assert len(table) == 2 and set(table["status"]) == {"finished"}
    lines = result_lines(removed["trial"] / "result.json")
    nodes = list(dict.fromkeys(r["node"] for r in lines))
    assert nodes[0] == removed["node"] and len(nodes) == 2  # moved to the surviving node
    epochs = [r["epoch"] for r in lines]
    assert epochs[-1] == 8 and epochs.count(1) == 1 and epochs.count(2) == 1  # resumed, not restarted
    other = next(p for p in run_dir.glob("*/result.json") if p.parent != removed["trial"])
    first_nodes = {r["node"] for r in result_lines(other)[:1]} | {removed["node"]}
    assert len(first_nodes) == 2  # the two trials started on two nodes
    meta = json.loads((run_dir / "kdsweep_meta.json").read_text())
    assert meta["cache"]["n_images"] == 1024 and meta["teacher_forwards"] == 1024
    m = export(run_dir, tmp_path / "out")
    assert (tmp_path / "out" / "student.pt2").is_file() and m["params"] > 0


@pytest.fixture
def gpu_cluster():
    """A CPU-less head and one worker node with 6 CPUs and 2 GPUs it does not have (Ray schedules by
    resources: it hands out the ids and sets CUDA_VISIBLE_DEVICES, which is what packing is about)."""
    import ray
    from ray.cluster_utils import Cluster

    was_up = ray.is_initialized()
    if was_up:
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False))
    c.add_node(num_cpus=6, num_gpus=2)
    ray.init(address=c.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()
    if was_up:
        from conftest import start_local_ray

        start_local_ray()


def test_fractional_gpus_pack_trials_onto_each_gpu(gpu_cluster, tiny_teacher, tmp_path):
    """sweep.gpus_per_trial 0.5 on a node with 2 GPUs and 6 CPUs: the GPUs bind, not the CPUs: four of the
    six trials run at once, two on each GPU, each trial told which GPU is its own for its whole life."""
    from orchestrator.sweep.driver import run_sweep

    cfg = _sweep_cfg(
        tmp_path,
        "t_gpus",
        **{
            "train.epochs": 3,
            "sweep.grace_period": 3,
            "data.train_limit": 512,
            "teacher.build": "driver",
            "sweep.gpus_per_trial": 0.5,
            "sweep.max_concurrent_trials": 6,
            "trials": [{"lr": 0.01 * (i + 1)} for i in range(6)],
        },
    )
    run_sweep(cfg, teacher_path=str(tiny_teacher))
    spans, gpus = [], []
    for rj in (tmp_path / "runs" / "t_gpus").glob("*/result.json"):
        lines = result_lines(rj)
        assert {r["gpus"] for r in lines} == {lines[0]["gpus"]} and lines[-1]["epoch"] == 3
        assert {r["device"] for r in lines} == {"cpu"}  # no CUDA here: it falls back, and says so
        gpus.append(lines[0]["gpus"])
        spans.append((lines[0]["wall_start"], lines[-1]["wall"], lines[0]["gpus"]))
    assert set(gpus) == {"0", "1"}  # both GPUs, one id per trial
    for t, _, _ in spans:  # as each trial started: at most two on any one GPU (half a GPU each)
        on = [g for s, e, g in spans if s <= t < e]
        assert max(on.count("0"), on.count("1")) <= 2
    running = [sum(s <= t < e for s, e, _ in spans) for t, _, _ in spans]
    assert max(running) == 4  # the GPUs bind: four at once of six
    # gpus_per_trial auto (the shipped configs'): the six CPU slots share the two GPUs, three to each
    from orchestrator.sweep.resources import with_gpus

    auto = with_gpus(_sweep_cfg(tmp_path, "t_auto", **{"sweep.cpus_per_trial": 1}))
    assert auto.sweep.gpus_per_trial == 0.3333
