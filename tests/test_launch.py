"""Launch paths: `ray job submit` against a real head (token auth on), cluster.yaml checked by Ray's own
launcher schema, and relative paths that resolve when the script runs from elsewhere (`ray submit`)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

RAY = str(Path(sys.executable).parent / "ray")


def _free_ports(n: int) -> list[int]:
    """n distinct free ports: every socket stays bound until all are picked (ports picked one at a time can
    repeat, and Ray refuses a head whose GCS and dashboard share one)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def head():
    """`ray start --head` with its job server on 127.0.0.1 and its own temp dir (short: socket paths are
    limited to 107 bytes) and every port its own: the job agent's default (52365) may still be held by a Ray
    an earlier test or a user started, and an agent that cannot bind never registers, so every submission
    gets "No available agent"; stopped by killing exactly that session's processes, never `ray stop`."""
    from orchestrator.sweep.ray_session import stop

    temp = tempfile.mkdtemp(prefix="kdr", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(ROOT)}
    gcs, dash, agent, agent_grpc, runtime_env, metrics = _free_ports(6)
    start = [
        RAY,
        "start",
        "--head",
        f"--port={gcs}",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
        f"--temp-dir={temp}",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--disable-usage-stats",
    ]
    out = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    yield f"http://127.0.0.1:{dash}", env
    assert stop(temp) == 0
    import shutil

    shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_end_to_end(head, tiny_teacher, tmp_path):
    """The smoke sweep submitted with `ray job submit --working-dir .` runs in Ray's copy of the project,
    finds its config there, and writes its run and export where it was told."""
    address, env = head
    with urllib.request.urlopen(address, timeout=30) as r:  # the dashboard answers on 127.0.0.1
        assert r.status == 200
    entry = [
        sys.executable,
        "-m",
        "orchestrator",
        "sweep",
        "--config",
        "configs/smoke.yaml",
        "--address",
        "auto",
        "--teacher",
        str(tiny_teacher),
        "--set",
        "name=t_job",
        "--set",
        f"sweep.storage={tmp_path / 'runs'}",
        "--set",
        f"teacher.cache_dir={tmp_path / 'cache'}",
        "--set",
        "teacher.mode=clean",
        "--set",
        "data.train_limit=256",
        "--set",
        "data.val_limit=64",
        "--set",
        "train.epochs=1",
        "--set",
        "train.layout=channels_last",  # the layout probes have their own tests
        "--set",
        "teacher.layout=channels_last",
        "--export-dir",
        str(tmp_path / "out"),
    ]
    submit = [
        RAY,
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(ROOT),
        "--runtime-env-json",
        json.dumps({"excludes": ["models", "tests", ".git"]}),
        "--",
        *entry,
    ]
    for _ in range(6):  # the head's job agent registers a little after the dashboard answers: Ray says
        # "No available agent to submit job, please try again later", and a user would try again
        out = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)
        if "No available agent to submit job" not in out.stderr:
            break
        time.sleep(5)
    assert "succeeded" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    assert (tmp_path / "runs" / "t_job" / "results.csv").is_file()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["run_dir"] == str(tmp_path / "runs" / "t_job") and (tmp_path / "out" / "student.onnx").is_file()


def test_cluster_yaml_passes_rays_launcher_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    cfg = prepare_config(raw)
    validate_config(cfg)
    assert cfg["provider"]["type"] == "local"
    head_cmds = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmds  # never on the open network
    broken = dict(cfg, max_workers="many")
    with pytest.raises(Exception, match="not of type 'integer'"):
        validate_config(broken)


def test_relative_paths_resolve_from_elsewhere(tmp_path, monkeypatch):
    """`ray submit` runs the script from the head's home directory: configs, teacher and runs still resolve
    against the project, not against wherever the process started."""
    from orchestrator.config import load_sweep_config, resolve_path
    from orchestrator.run.rundir import Run

    monkeypatch.chdir(tmp_path)
    cfg = load_sweep_config("configs/sweep.yaml")
    assert resolve_path(cfg.teacher.checkpoint) == str(ROOT / "models" / "teacher" / "resnet50.pt")
    assert Run.of(cfg).path == str(ROOT / "runs" / "default")
    assert resolve_path("/abs/x") == "/abs/x" and resolve_path("s3://b/k") == "s3://b/k"
    (tmp_path / "configs").mkdir()  # inside a checkout: its own directory wins
    assert resolve_path("runs") == str(tmp_path / "runs")


def test_submit_script_runs_as_a_file_from_elsewhere(tmp_path):
    """`ray submit cluster.yaml orchestrator/submit.py -- ...` runs the file by path on the head, from another
    directory: it must import the project and reach `kdsweep sweep`'s parser."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "orchestrator" / "submit.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "usage: kdsweep sweep" in out.stdout
