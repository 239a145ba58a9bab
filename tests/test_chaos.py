"""Chaos while a search runs (bench/chaos_soak.py, short): trial workers killed at random moments, many
times, and on a simulated cluster whole nodes too; every trial still finishes, no reported epoch is reported
again (a kill costs at most the epoch in progress), and the export is the best trial by validation."""

import importlib.util

import pandas as pd

from tests.conftest import ROOT, smoke_config


def _bench():
    spec = importlib.util.spec_from_file_location("chaos_soak", ROOT / "bench" / "chaos_soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_search_survives_repeated_worker_kills(ray_local, tiny_teacher, tmp_path):
    from orchestrator.release.export import export

    cfg = smoke_config(
        tmp_path,
        "t_chaos",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 64,
            "train.epochs": 4,
            "train.student": "resdw_w24_d111",
            "search_space": {"lr": {"loguniform": [0.01, 0.2]}},
            "sweep.num_samples": 6,
            "sweep.grace_period": 4,  # no early cuts: every trial must reach its end
            "sweep.max_failures": 8,
        },
    )
    got = _bench().soak(cfg, str(tiny_teacher), interval=2.0, kills=4, seed=1)
    print(got)  # the counts, for the record of a run (-s)
    assert got["kills"].get("trial worker", 0) >= 2, got  # the killer found and killed workers, more than once
    assert got["trials"] == 6 and got["finished"] == 6 and got["not_finished"] == [], got
    assert got["epochs_redone"] == 0, got  # each kill cost at most the epoch in progress (never a reported one)
    run_dir = tmp_path / "runs" / "t_chaos"
    table = pd.read_csv(run_dir / "results.csv")
    m = export(run_dir, tmp_path / "out")
    assert len(table) == 6 and m["val_acc"] == table["val_acc"].max()  # the best trial by validation


def test_a_search_survives_lost_nodes_and_workers(cluster, tiny_teacher, tmp_path):
    """Two one-CPU worker nodes: one is removed without a graceful stop while trials train (its raylet and
    trials die at once), and trial workers are killed too; every trial finishes on the node left, each from
    its last checkpoint: a kill redoes at most the epoch of each trial it hits (a node lost between a
    result's report and its checkpoint's registration redoes that reported epoch)."""
    c, workers = cluster
    cfg = smoke_config(
        tmp_path,
        "t_chaos_nodes",
        {
            "teacher.mode": "clean",
            "data.train_limit": 256,
            "data.val_limit": 64,
            "train.epochs": 4,
            "train.student": "resdw_w24_d111",
            "search_space": {"lr": {"loguniform": [0.01, 0.2]}},
            "sweep.num_samples": 4,
            "sweep.grace_period": 4,
            "sweep.max_concurrent_trials": 2,
            "sweep.max_failures": 8,
        },
    )
    got = _bench().soak(cfg, str(tiny_teacher), 3.0, 2, 2, cluster=c, nodes=workers, node_interval=2.0, node_kills=1)
    print(got)
    assert got["kills"].get("node") == 1, got  # the node killer removed one while trials trained
    assert got["trials"] == 4 and got["finished"] == 4 and got["not_finished"] == [], got
    assert got["epochs_redone"] <= sum(got["kills"].values()), got  # at most one a kill, never an epoch lost
    table = pd.read_csv(tmp_path / "runs" / "t_chaos_nodes" / "results.csv")
    assert len(table) == 4 and set(table["status"]) == {"finished"}
