"""A sweep on a real object store: an S3 server (moto's, on 127.0.0.1) holds the run, reached through
pyarrow's S3 filesystem as Ray Tune reaches it (AWS_ENDPOINT_URL), so the run directory is an s3:// URI
and nothing of it is on a local disk the driver could fall back to."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """An empty bucket `kdsweep` on a moto server; the environment that reaches it (this process and its
    children); this machine's state directory in tmp_path."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = dict(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3").create_bucket(Bucket="kdsweep")
    yield env
    server.stop()


def test_a_sweep_on_s3_survives_its_killed_driver_and_is_read_from_there(s3, tiny_teacher, tmp_path):
    """SIGKILL the driver of a sweep whose storage is s3:// once a trial has checkpointed there; the same
    command resumes from the object store (finished epochs not redone), stops the dead driver's Ray, and
    keeps a local run's promises: `kdsweep results` lists stop reasons, `kdsweep export` builds the student from
    the checkpoints there (the claim's refusal of another config on S3: test_two_drivers_racing_one_s3_run_*).
    (The killed driver of a local run takes the same path with its session record in the run directory: one
    test for both keeps CI short.)"""
    from orchestrator.run.rundir import Run
    from orchestrator.sweep.ray_session import session_pids, session_record

    uri = "s3://kdsweep/runs/t_s3"
    cmd = [
        sys.executable,
        "-m",
        "orchestrator",
        "sweep",
        "--config",
        str(ROOT / "configs" / "smoke.yaml"),
        "--teacher",
        str(tiny_teacher),
        "--no-export",
        "--set",
        "name=t_s3",
        "--set",
        "sweep.storage=s3://kdsweep/runs",
        "--set",
        f"teacher.cache_dir={tmp_path / 'cache'}",
        "--set",
        "teacher.mode=clean",
        "--set",
        "data.train_limit=512",
        "--set",
        "data.val_limit=128",
        "--set",
        "train.epochs=4",
        "--set",
        "sweep.grace_period=4",
        "--set",
        "sweep.max_concurrent_trials=1",
        "--set",
        "search_space={}",
        "--set",
        "trials=[{student: res3_w16_d111}, {student: resdw_w24_d111}]",
        "--set",
        "train.layout=channels_last",  # the layout probes have their own tests
        "--set",
        "teacher.layout=channels_last",
    ]
    env = {**os.environ, **s3, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    run = Run(uri)
    while (
        time.time() < deadline
        and max(
            (len((run.read_text(f) or "").splitlines()) for f in run.listing() if f.endswith("/result.json")), default=0
        )
        < 2
    ):
        time.sleep(0.5)  # two epochs in the driver's last sync of the experiment (snapshot_period: 0.1 s for 2 trials)
    assert first.poll() is None, "the sweep ended before it could be killed"
    record = session_record(run)
    assert record.is_file() and str(tmp_path / "state") in str(record)  # on this machine, not on S3
    session = json.loads(record.read_text())["session_dir"]
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(2)
    assert session_pids(session), "expected leftovers of the killed driver (Ray's agents outlive it)"

    done = subprocess.run(cmd + ["--dashboard"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Ray dashboard: http://127.0.0.1:" in done.stdout  # --dashboard: local, on loopback only
    assert not session_pids(session) and not record.exists()  # the rerun stopped them, then ended cleanly
    files = run.listing()
    assert "kdsweep_meta.json" in files  # the finished marker, on S3
    assert not list((tmp_path).glob("**/t_s3"))  # nothing of the run on a local disk here

    ckpts: dict[str, set] = {}
    for f in files:
        parts = f.split("/")
        if len(parts) >= 3 and parts[-2].startswith("checkpoint_"):
            ckpts.setdefault("/".join(parts[:-2]), set()).add(parts[-2])
    # retention after the restore read what the killed driver left on S3: each ended trial keeps its best only
    assert ckpts and all(len(c) == 1 for c in ckpts.values()), ckpts
    for rj in [f for f in files if f.endswith("/result.json")]:
        epochs = [json.loads(line)["epoch"] for line in run.read_text(rj).splitlines()]
        assert epochs[-1] == 4 and epochs.count(1) == 1  # never restarted from scratch
        assert len(epochs) - len(set(epochs)) <= 1  # at most one epoch redone

    table = subprocess.run(
        [sys.executable, "-m", "orchestrator", "results", uri],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr[-2000:]
    assert table.stdout.count("finished") >= 2, table.stdout

    out = tmp_path / "out"
    exp = subprocess.run(
        [sys.executable, "-m", "orchestrator", "export", "--run", uri, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exp.returncode == 0, exp.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    results = pd.read_csv(run.fetch(tmp_path / "copy") / "results.csv")
    assert metrics["run_dir"] == uri and metrics["val_acc"] == results["val_acc"].max()
    assert (out / "student.onnx").is_file()
    for copy in (ROOT / "cache" / "runs").glob("t_s3-*"):  # the readers' local copy of the run (fetch)
        shutil.rmtree(copy)


def test_an_unreachable_store_is_one_line(s3, monkeypatch, capsys):
    """Storage that does not answer (here: nothing listens at the endpoint) is the user's to fix: exit 2 and
    one line naming the URI, before any work, never a traceback."""
    from orchestrator.cli import main

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["results", "s3://kdsweep/runs/none"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the run's storage s3://kdsweep/runs/none" in err and "AWS_ENDPOINT_URL" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_two_drivers_racing_one_s3_run_leave_one_claim(s3, monkeypatch):
    """Two drivers with different configs claim one s3:// run at the same moment, both having looked and
    found no claim: the conditional PUT (If-None-Match) lets exactly one write; the other is refused in one
    line and the claim is the winner's. The winner's config goes on; a claim with no trial yet still gives
    way to a corrected config (If-Match on what was read)."""
    import threading

    from orchestrator.config import load_sweep_config
    from orchestrator.errors import UserError
    from orchestrator.run.layout import CONFIG_FILE
    from orchestrator.run.rundir import Run

    def cfg(lr):
        return load_sweep_config(ROOT / "configs" / "smoke.yaml", {"name": "race", "train.lr": lr})

    barrier, real = threading.Barrier(2, timeout=5), Run.read_text

    def looked(self, name):  # a claim that reads before it writes: both drivers read before either writes
        out = real(self, name)
        if name == CONFIG_FILE:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        return out

    monkeypatch.setattr(Run, "read_text", looked)
    monkeypatch.setattr(Run, "_has_trials", lambda self: True)  # a run under way: another config is refused
    run, outcome = Run("s3://kdsweep/runs/race"), {}

    def claim(lr):
        try:
            run.claim(cfg(lr), None)
            outcome[lr] = "claimed"
        except UserError as e:
            outcome[lr] = str(e)

    threads = [threading.Thread(target=claim, args=(lr,)) for lr in (0.01, 0.02)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [lr for lr, said in outcome.items() if said == "claimed"]
    assert len(won) == 1, outcome
    lost = ({0.01, 0.02} - set(won)).pop()
    assert "holds a sweep that computed something else (differs in train)" in outcome[lost]
    monkeypatch.setattr(Run, "read_text", real)
    assert json.loads(run.read_text(CONFIG_FILE))["train"]["lr"] == won[0]
    run.claim(cfg(won[0]), None)  # the same computation goes on
    monkeypatch.setattr(Run, "_has_trials", lambda self: False)
    run.claim(cfg(0.03), None)  # no trial yet: a corrected config takes the claim
    assert json.loads(run.read_text(CONFIG_FILE))["train"]["lr"] == 0.03
