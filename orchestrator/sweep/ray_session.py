"""Leftovers of a killed driver: the local Ray a sweep starts is stopped by `ray.shutdown()` at a normal
end, but a driver killed with SIGKILL leaves some of its node's processes behind (the dashboard and
runtime-env agents outlive it, re-parented to init). The sweep records its local Ray session in the run
directory (a run on shared storage: in this machine's state directory, `session_record`); a rerun stops
whatever of that session is still alive before it starts its own.

Processes are found by what they hold open under the session directory (Ray overwrites their command
lines), read from /proc: Linux only, a no-op elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import time
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.run.io import atomic_write_json
from orchestrator.run.rundir import Run

log = logging.getLogger(__name__)

SESSION_FILE = "ray_session.json"


@contextlib.contextmanager
def connected(run: Run, address: str | None, dashboard: bool):
    """Ray for the sweep of `run`: the cluster at `address` (or $RAY_ADDRESS), else a local instance (no
    dashboard unless asked, then on 127.0.0.1 only) recorded in the run so that a rerun after a killed
    driver stops its leftovers; shut down at the end. Inside an already connected driver, that one."""
    import ray

    reap(session_record(run))  # what a killed driver of this run left running on this machine
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {} if address else dict(include_dashboard=dashboard, dashboard_host="127.0.0.1")
    ctx = ray.init(address=address, **kwargs)
    if dashboard and getattr(ctx, "dashboard_url", None):
        log.info(f"Ray dashboard: http://{ctx.dashboard_url}  (per-epoch curves: tensorboard --logdir {run.path})")
    mine = not address
    if mine:
        record(session_record(run))
    try:
        yield
    finally:
        ray.shutdown()
        if mine:
            session_record(run).unlink(missing_ok=True)  # a clean end: ray.shutdown() stopped the session


def session_record(run: Run) -> Path:
    """Where this machine keeps the record of the local Ray session driving `run`: in the run directory, or
    for a run on shared storage (whose rerun may be on another machine) in this machine's state directory."""
    if run.is_local:
        return run.dir / SESSION_FILE
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "kdsweep" / "sessions"
    return state / f"{hashlib.sha256(run.path.encode()).hexdigest()[:20]}.json"


def record(path: Path) -> None:
    """Write this driver's local Ray session to `path` (call right after ray.init)."""
    import ray._private.worker as worker

    node = getattr(worker, "_global_node", None)
    if node is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, dict(session_dir=node.get_session_dir_path(), driver_pid=os.getpid()))


def session_pids(session_dir: str) -> list[int]:
    """Processes with a file open under `session_dir` (its logs, sockets), this process excluded."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            if any(os.readlink(fd).startswith(session_dir) for fd in (proc / "fd").iterdir()):
                pids.append(pid)
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def reap(path: Path) -> int:
    """Stop what is left of a dead driver's session recorded at `path`; returns how many processes."""
    if not path.is_file() or not Path("/proc").is_dir():
        return 0
    rec = json.loads(path.read_text())
    if _alive(rec["driver_pid"]) and rec["driver_pid"] != os.getpid():
        raise UserError(
            f"the sweep driver (pid {rec['driver_pid']}) of this run is still running; "
            "wait for it or stop it before running this sweep again"
        )
    n = stop(rec["session_dir"])
    if n:
        log.info(f"warning: {n} process(es) of the interrupted run's Ray session could not be stopped")
    path.unlink(missing_ok=True)
    return n


def stop(session_dir: str) -> int:
    """SIGTERM, then SIGKILL, every process holding files under `session_dir` (a Ray temp dir or session
    dir: what `ray stop` would do for this one session only, leaving other Ray instances alone).
    Returns how many are still alive."""
    pids = session_pids(session_dir)
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            break
    return len(session_pids(session_dir)) if pids else 0
