"""Released teachers whose weights left the working tree, so that the tree stays small enough for a lent
GPU machine to carry (at most 64 MiB): their records (sidecar, metrics, history) stay in models/teacher/,
their bytes in git history. `kdsweep teacher restore NAME` brings one back, checked against the sha256 its
release recorded; a config that names a missing one is told that command."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.run.io import atomic_write, sha256_file

ROOT = Path(__file__).resolve().parents[2]
TEACHERS = Path("models/teacher")
# name -> the commit whose tree holds models/teacher/<name>.pt as released
IN_HISTORY = {"resnet50_x56": "858ec5d843ab1b669e4730ee09e2155892d76340"}


def hint(path: str | Path) -> str:
    """The sentence a missing-checkpoint error adds when the file is a teacher kept in history."""
    name = Path(path).stem
    if Path(path).suffix == ".pt" and name in IN_HISTORY:
        return f"; this released teacher is kept in git history: `kdsweep teacher restore {name}` brings it back"
    return ""


def restore(name: str, root: Path = ROOT, table: dict[str, str] | None = None) -> Path:
    """Write models/teacher/<name>.pt from the commit that holds it, after checking its sha256 against
    models/teacher/<name>.json; a file already there with the right bytes is left as it is."""
    table = IN_HISTORY if table is None else table
    if name not in table:
        raise UserError(f"no teacher {name!r} is kept in git history; those that are: {', '.join(sorted(table))}")
    dest = root / TEACHERS / f"{name}.pt"
    sidecar = dest.with_suffix(".json")
    if not sidecar.is_file():
        raise UserError(f"{sidecar} not found: the release's record of {name} is missing from this checkout")
    want = json.loads(sidecar.read_text())["sha256"]
    if dest.is_file() and sha256_file(dest) == want:
        return dest
    got = subprocess.run(
        ["git", "-C", str(root), "show", f"{table[name]}:{(TEACHERS / dest.name).as_posix()}"],
        capture_output=True,
    )
    if got.returncode != 0:
        why = got.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(
            f"git cannot read {dest.name} at {table[name][:12]} ({why[0] if why else 'no message'}); "
            "restoring needs a clone with its history (git fetch --unshallow)"
        )
    if hashlib.sha256(got.stdout).hexdigest() != want:
        raise UserError(f"{dest.name} at {table[name][:12]} does not match the sha256 in {sidecar.name}")
    atomic_write(dest, lambda tmp: tmp.write_bytes(got.stdout))
    return dest
