"""A run is one object: `Run(path)` is a run directory, on this machine's disk or on shared storage (a URI
such as s3://bucket/runs/name, opened through pyarrow's filesystems as Ray Tune opens it). It owns the
directory's file names (layout), its identity and claim, its finished marker and meta record, and every
write into it. This is the one place that decides between a local path and a URI.

Atomicity: on a local disk every write is a temp file and one rename (run.io); on an object store one
object is written by one PUT, which readers see whole or not at all. The claim is one step on both: under
a file lock on a local disk; on S3 (and S3-compatible stores) a conditional PUT that creates the claim only
if it is absent (If-None-Match), or replaces a trial-less one only if unchanged since it was read
(If-Match), so of two drivers started at the same moment with different configs one claims and the other is
refused. Other URI schemes have no such write: the claim says so in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock  # installed with Ray; imported here without Ray

from orchestrator.config import ConfigError, SweepConfig, from_dict, resolve_path, to_dict
from orchestrator.errors import UserError
from orchestrator.loader import is_uri
from orchestrator.run.io import atomic_write, atomic_write_json, atomic_write_text, parse_json
from orchestrator.run.layout import (
    CKPT_FILE,
    CLAIM_LOCK,
    CONFIG_FILE,
    ERROR_FILE,
    FATAL_FILE,
    FINAL_BASE_FILE,
    FINAL_DIR,
    GROWN_FILE,
    META_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    RESULTS_FILE,
    SKIPPED_FILE,
)

# what `Run.fetch` copies from shared storage for the readers (results, report, status): a run's records,
# not its checkpoints, which `fetch(checkpoints=True)` adds for an export
RECORDS = (
    RESULT_FILE,
    PARAMS_FILE,
    ERROR_FILE,
    FATAL_FILE,
    CONFIG_FILE,
    META_FILE,
    RESULTS_FILE,
    FINAL_BASE_FILE,
    SKIPPED_FILE,
    GROWN_FILE,
)

log = logging.getLogger(__name__)
_REACHED: set[str] = set()  # the URI runs whose storage has answered in this process


@dataclass(frozen=True)
class Run:
    path: str  # a local directory or a URI

    @classmethod
    def of(cls, cfg: SweepConfig) -> Run:
        """The run a config names: sweep.storage / name (storage resolved from the project for a local path)."""
        s = cfg.sweep.storage
        return cls(f"{s.rstrip('/')}/{cfg.name}" if is_uri(s) else str(Path(resolve_path(s)) / cfg.name))

    @property
    def is_local(self) -> bool:
        return not is_uri(self.path)

    @property
    def dir(self) -> Path:
        """The local directory (a run on shared storage: `fetch()` first)."""
        if not self.is_local:
            raise ValueError(f"{self.path} is on shared storage; Run.fetch() gives a local copy")
        return Path(self.path)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def storage(self) -> str:
        """Where the run's Tune experiments live (the parent of the run directory)."""
        return self.path.rstrip("/").rsplit("/", 1)[0]

    def join(self, *names: str) -> str:
        return "/".join([self.path.rstrip("/"), *names])

    def _fs(self, name: str = ""):
        """pyarrow's filesystem and the path within it for `name` (a URI only)."""
        from pyarrow import fs

        try:
            filesystem, p = fs.FileSystem.from_uri(self.join(name) if name else self.path)
            if self.path not in _REACHED:  # the first touch: an unreachable store is the user's to fix
                filesystem.get_file_info(p)
                _REACHED.add(self.path)
            return filesystem, p
        except OSError as e:  # unreachable, no such bucket, no credentials: the storage, not a bug
            if self.path in _REACHED:
                raise  # it answered before: a failure mid-run keeps its traceback
            raise UserError(
                f"cannot open the run's storage {self.path}: {str(e).splitlines()[0]}; check the URI, "
                "the credentials and, for an S3-compatible server, AWS_ENDPOINT_URL"
            ) from None

    # --- reading -----------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        if self.is_local:
            return (self.dir / name).exists()
        from pyarrow import fs

        filesystem, p = self._fs(name)
        return filesystem.get_file_info(p).type != fs.FileType.NotFound

    def read_text(self, name: str) -> str | None:
        """The file's text, or None where there is none."""
        if self.is_local:
            f = self.dir / name
            return f.read_text() if f.is_file() else None
        if not self.exists(name):
            return None
        filesystem, p = self._fs(name)
        with filesystem.open_input_stream(p) as f:
            return f.read().decode()

    def read_json(self, name: str) -> dict:
        """The JSON object in `name`, or {} where there is none."""
        text = self.read_text(name)
        return parse_json(text, self.join(name)) if text else {}

    @property
    def finished(self) -> bool:
        """The finished marker (the meta record, written last) is there."""
        return self.exists(META_FILE)

    @property
    def meta(self) -> dict:
        return self.read_json(META_FILE)

    @property
    def final_base(self) -> dict:
        """The final stage's base settings ({} before the stage began)."""
        return self.read_json(f"{FINAL_DIR}/{FINAL_BASE_FILE}")

    # --- writing: every write into a run goes through these ---------------------------------------------
    def write_text(self, name: str, text: str):
        if self.is_local:
            atomic_write_text(self.dir / name, text)
            return
        filesystem, p = self._fs(name)
        filesystem.create_dir(p.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(p) as f:  # one object: seen whole or not at all
            f.write(text.encode())

    def write_json(self, name: str, obj, **kwargs):
        if self.is_local:
            atomic_write_json(self.dir / name, obj, **kwargs)
        else:
            self.write_text(name, json.dumps(obj, indent=1, **kwargs) + "\n")

    def write_results(self, table):
        self.write_text(RESULTS_FILE, table.to_csv(index=False))

    def finish(self, meta: dict):
        """The meta record: the finished marker, written last and never torn."""
        self.write_json(META_FILE, meta, default=str)

    def write_final_base(self, settings: dict):
        """The final stage's base settings: what its trials' variants are read against."""
        self.write_json(f"{FINAL_DIR}/{FINAL_BASE_FILE}", settings)

    def remove(self):
        """Delete the run (--force)."""
        if self.is_local:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.exists(""):
            filesystem, p = self._fs()
            filesystem.delete_dir(p)

    # --- identity ------------------------------------------------------------------------------------------
    def claim(self, cfg: SweepConfig, teacher: dict | None):
        """A run directory belongs to one computation (the config after overrides and the teacher's bytes):
        resuming it with another would mix two sweeps. A claim with no trial yet (a sweep that failed before
        its first trial) is given up to a corrected config. Check, then write, as one step under a lock."""
        if not self.is_local:
            self._claim(cfg, teacher)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / CLAIM_LOCK)):
            self._claim(cfg, teacher)

    def search_begun(self) -> bool:
        """The search stage has trials here (or Tune's record of them)."""
        if self.is_local:
            return any(self.dir.glob(f"*/{RESULT_FILE}")) or any(self.dir.glob("experiment_state*.json"))
        return any(
            name.endswith(f"/{RESULT_FILE}") or name.rsplit("/", 1)[-1].startswith("experiment_state")
            for name in self.listing(depth=2)
        )

    @property
    def search_skipped(self) -> str:
        """Why the search did not run ("" where it ran or has not been decided)."""
        return self.read_json(SKIPPED_FILE).get("reason", "")

    def skip_search(self, reason: str):
        self.write_json(SKIPPED_FILE, {"reason": reason})

    @property
    def search_grown(self) -> dict:
        """The grown search's record ({candidates, reason}; {} where the search did not grow)."""
        return self.read_json(GROWN_FILE)

    def grow_search(self, candidates: int, reason: str):
        self.write_json(GROWN_FILE, {"candidates": candidates, "reason": reason})

    def _has_trials(self) -> bool:
        return self.search_begun() or bool(self.final_base)

    def _claim(self, cfg: SweepConfig, teacher: dict | None):
        mine = json.loads(json.dumps({**to_dict(cfg), "_teacher": teacher}, default=str))
        if not self.is_local and self.path.startswith("s3://"):
            self._claim_s3(mine)
            return
        if not self.is_local:
            log.info(
                f"warning: {self.path.split('://')[0]}:// gives kdsweep no create-if-absent write: two drivers "
                "started at the same moment on this run could both claim it"
            )
        text = self.read_text(CONFIG_FILE)
        if text is not None and self._has_trials():
            self._same_or_refuse(json.loads(text), mine)
            return
        self.write_json(CONFIG_FILE, mine)

    def _same_or_refuse(self, claimed: dict, mine: dict):
        theirs = _normalized(claimed, mine)
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if "_teacher" in diff:
                diff[diff.index("_teacher")] = (
                    f"the teacher: {(theirs.get('_teacher') or {}).get('path')} -> "
                    f"{(mine.get('_teacher') or {}).get('path')}"
                )
            raise UserError(
                f"{self.path} holds a sweep that computed something else (differs in "
                f"{', '.join(diff)}); give this sweep another name (--set name=...) or pass "
                "--force to start it over"
            )

    def _claim_s3(self, mine: dict):
        """The claim as conditional PUTs (S3's If-None-Match / If-Match): create it if absent; else the same
        computation goes on, another is refused, and a claim with no trial yet is replaced only if nobody
        changed it since it was read (a race lost there reads the winner's claim again)."""
        import boto3
        from botocore.exceptions import ClientError

        self._fs()  # the storage answers (or the one-line error) before anything is written
        bucket, _, key = self.join(CONFIG_FILE).removeprefix("s3://").partition("/")
        s3, body = boto3.client("s3"), (json.dumps(mine, indent=1) + "\n").encode()

        def put(**cond) -> bool:
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=body, **cond)
                return True
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise

        for _ in range(5):
            if put(IfNoneMatch="*"):
                return
            try:
                got = s3.get_object(Bucket=bucket, Key=key)
            except ClientError as e:  # deleted since (another driver's --force): create it again
                if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    continue
                raise
            claimed = json.loads(got["Body"].read())
            if self._has_trials() or _normalized(claimed, mine) == mine:
                self._same_or_refuse(claimed, mine)
                return
            if put(IfMatch=got["ETag"]):  # a trial-less claim gives way to a corrected config
                return
        raise UserError(f"the claim of {self.path} kept changing under this driver: another driver is claiming it")

    # --- shared storage -> a local copy for the readers ------------------------------------------------
    def listing(self, depth: int | None = None) -> list[str]:
        """Every file of the run, as paths relative to it (at most `depth` levels down)."""
        if self.is_local:
            return sorted(
                str(p.relative_to(self.dir))
                for p in self.dir.rglob("*")
                if p.is_file() and (depth is None or len(p.relative_to(self.dir).parts) <= depth)
            )
        from pyarrow import fs

        filesystem, root = self._fs()
        if filesystem.get_file_info(root).type == fs.FileType.NotFound:
            return []
        infos = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
        rel = [i.path[len(root.rstrip("/")) + 1 :] for i in infos if i.type == fs.FileType.File]
        return sorted(r for r in rel if depth is None or r.count("/") < depth)

    def fetch(self, dest: str | Path | None = None, checkpoints: bool = False) -> Path:
        """The run as a local directory: itself on a local disk; from shared storage, a copy of its records
        (and, with `checkpoints`, its checkpoint files) in `dest` (default: cache/runs/<name>-<hash of the URI>,
        one per URI). The copy mirrors the store: a file no longer there is removed from it."""
        if self.is_local:
            return self.dir
        tag = hashlib.sha256(self.path.encode()).hexdigest()[:8]
        dest = Path(dest or Path(resolve_path("cache")) / "runs" / f"{self.name}-{tag}")
        filesystem, root = self._fs()
        there = self.listing()
        for rel in there:
            leaf = rel.rsplit("/", 1)[-1]
            if leaf in RECORDS or (checkpoints and leaf == CKPT_FILE):
                with filesystem.open_input_stream(f"{root.rstrip('/')}/{rel}") as f:
                    data = f.read()
                atomic_write(dest / rel, lambda tmp: tmp.write_bytes(data))  # noqa: B023 (called at once)
        for p in [p for p in dest.rglob("*") if p.is_file()] if dest.is_dir() else []:
            if str(p.relative_to(dest)) not in there:  # left from an earlier run of this URI
                p.unlink()
        return dest


def _normalized(theirs: dict, mine: dict) -> dict:
    """A claim written by an older kdsweep, read through today's schema: keys added since take their
    defaults (the computation they describe is unchanged); a claim without a teacher record cannot be
    checked for one, so it takes this run's. Where trials find GPUs (sweep.gpus_per_trial: auto is
    resolved on the cluster each driver meets; older claims hold a number) is placement, not identity. A
    claim older than `grow` never grew its search, and a resumed run does not grow one begun (the driver):
    it takes this run's grow section. A teacher is the same by its bytes: found at another path (the
    checkout moved, a worktree), it is this run's."""
    teacher = theirs.pop("_teacher", mine.get("_teacher"))
    older = "grow" not in theirs
    try:
        theirs = json.loads(json.dumps(to_dict(from_dict(SweepConfig, theirs)), default=str))
    except ConfigError:
        pass  # not readable today: compared as it is, and reported as different
    if isinstance(theirs.get("sweep"), dict) and "gpus_per_trial" in (mine.get("sweep") or {}):
        theirs["sweep"] = {**theirs["sweep"], "gpus_per_trial": mine["sweep"]["gpus_per_trial"]}
    if older and "grow" in mine:
        theirs["grow"] = mine["grow"]
    if _same_bytes(teacher, mine.get("_teacher")):  # the same teacher found at another path (a moved checkout)
        teacher = mine["_teacher"]
    return {**theirs, "_teacher": teacher}


def _same_bytes(a: dict | None, b: dict | None) -> bool:
    """Two teacher records name the same networks by their bytes (sha256 of the teacher and of each ensemble
    member, in order), wherever the files lie."""

    def digests(t: dict) -> list:
        return [t.get("sha256")] + [m.get("sha256") for m in t.get("ensemble") or []]

    return bool(a and b) and None not in digests(a) and digests(a) == digests(b)
