"""Writes tests/data/legacy_run/: `kdsweep train` of legacy_run.yaml, killed after its first epoch of two,
as the kdsweep checkout it runs from wrote it (run it from an older checkout to pin that layout):

    cd <older checkout> && python <this checkout>/tests/data/make_legacy_run.py <this checkout>/tests/data
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

here, out = Path.cwd(), Path(sys.argv[1]).resolve()
sys.path.insert(0, str(here))
from orchestrator.config import load_sweep_config  # noqa: E402
from orchestrator.sweep import local  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    (Path(tmp) / "configs").mkdir()
    shutil.copy(out / "legacy_run.yaml", Path(tmp) / "configs" / "legacy_run.yaml")
    import os

    os.chdir(tmp)
    cfg = load_sweep_config("configs/legacy_run.yaml")
    real = local.train_student

    def killed(c, data, report=None, resume=None, device="cpu"):
        def once(m, s):
            report(m, s)
            raise KeyboardInterrupt

        return real(c, data, report=once, resume=resume, device=device)

    local.train_student = killed
    try:
        local.run_local(cfg, device="cpu")
    except KeyboardInterrupt:
        pass
    commit = subprocess.run(
        ["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    shutil.rmtree(out / "legacy_run", ignore_errors=True)
    shutil.copytree(Path(tmp) / "runs" / "legacy", out / "legacy_run")
    (out / "legacy_run" / "WRITTEN_BY").write_text(f"kdsweep {commit}\n")
print(f"wrote {out / 'legacy_run'}")
