"""A search's ledger: one small file per candidate, so that a long search survives the loss of its run
directory (a machine that is gone, a session that ended) and goes on from where it stood.

    <ledger>/plan.json        the candidates, drawn up front (orchestrator/space.py: draw_candidates), and what
                              names the search (its config's search space, seed, length, rungs)
    <ledger>/c007.jsonl       candidate 7: one line per epoch it reported ({"epoch", "val_acc", ...}), then
                              an end line {"end": "finished" | "stopped at rung <e>" | ...}
    <ledger>/c007.pt          while candidate 7 trains: its last epoch's checkpoint (~1 MB), removed when
                              it ends
    <ledger>/final-<key>.pt   while a trial of the final stage trains: the same (orchestrator/sweep/stages.py)

A run with a ledger trains only the candidates without an end line; the rungs its scheduler judges by are
seeded with every recorded candidate's values, and the winner is chosen over all of them. A candidate whose
file has no end line was cut off mid-run: it goes on from its checkpoint here (at most the epoch under way
is lost), or, without one, trains again from its start. Lines are appended whole and flushed; a line torn by
a crash is ended before the next append and ignored when read; checkpoints are written whole.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.run.io import atomic_write, atomic_write_json, disk_full, full_disk_error, read_json
from trainables.config import TrainConfig

PLAN_FILE = "plan.json"
MACHINE_KEYS = ("layout",)  # train settings each machine resolves for itself ("auto"): not part of what the
# search is, so a ledger begun on one CPU goes on on another
_TRAIN_DEFAULTS = {
    f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
    for f in dataclasses.fields(TrainConfig)
}
ROW_KEYS = (
    "epoch",
    "val_acc",
    "val_acc_plain",
    "val_loss",
    "train_loss",
    "params",
    "macs",
    "images_per_s",
    "elapsed_s",
    "precision",
    "threads",
    "machine",  # on a candidate's first line: what its speed was measured on
)  # what a candidate's line keeps of an epoch's metrics


@dataclass
class Entry:
    """One candidate: its variant (the drawn settings), its recorded epochs, and why it ended (None: not yet)."""

    index: int
    variant: dict
    rows: list[dict] = field(default_factory=list)
    end: str | None = None
    correct: str | None = None  # a finished candidate's last epoch: which validation images it got right
    # (trainables.config.pack_mask), for paired comparisons

    @property
    def curve(self) -> list[float]:
        return [r["val_acc"] for r in self.rows]

    @property
    def best(self) -> float:
        return max(self.curve, default=float("nan"))


def _same_search(old: dict, new: dict) -> bool:
    """Whether two identities name one search: less the machine's own resolutions, and less the train
    settings added to the code since the ledger began where they keep their default (they change nothing)."""

    def strip(identity: dict) -> dict:
        train = identity.get("train")
        if not isinstance(train, dict):
            return identity
        return {**identity, "train": {k: v for k, v in train.items() if k not in MACHINE_KEYS}}

    a, b = strip(old), strip(new)
    if isinstance(a.get("train"), dict) and isinstance(b.get("train"), dict):
        added = set(b["train"]) - set(a["train"])
        b["train"] = {k: v for k, v in b["train"].items() if k not in added or v != _TRAIN_DEFAULTS.get(k, ...)}
    return a == b


def _name(i: int) -> str:
    return f"c{i:03d}.jsonl"


def _state_name(i: int) -> str:
    return f"c{i:03d}.pt"


class Ledger:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def open(self, identity: dict, candidates: list[dict], rungs: dict | None = None) -> list[Entry]:
        """The ledger for this search: created with `candidates` and `rungs` (how ASHA judges them) where there
        is none; where there is one, it must be of the same search (its identity: space, seed, length), or a
        one-line error says so. The rungs are kept as the search began (`self.rungs()`)."""
        plan = self.folder / PLAN_FILE
        if plan.is_file():
            old = read_json(plan)
            if not _same_search(old["identity"], json.loads(json.dumps(identity))):
                raise UserError(
                    f"{self.folder} is the ledger of another search (its space, seed or length differ); "
                    "give this search its own sweep.ledger folder, or delete that one to start afresh"
                )
            candidates = old["candidates"]
        else:
            atomic_write_json(plan, {"identity": identity, "candidates": candidates, "rungs": rungs or {}})
        return self.entries(candidates)

    def rungs(self) -> dict:
        """How ASHA judges this search's candidates, as decided when it began ({"grace", "reduction_factor"}):
        a rule refitted since does not change a search under way."""
        return read_json(self.folder / PLAN_FILE).get("rungs") or {}

    def entries(self, candidates: list[dict]) -> list[Entry]:
        out = []
        for i, variant in enumerate(candidates):
            e = Entry(i, variant)
            p = self.folder / _name(i)
            for line in p.read_text().splitlines() if p.is_file() else []:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # torn by a crash mid-append; the lines around it are whole
                    continue
                if "end" in row:
                    e.end, e.correct = row["end"], row.get("val_correct")
                elif "epoch" in row:
                    e.rows = [r for r in e.rows if r["epoch"] < row["epoch"]] + [row]  # a rerun starts over
            out.append(e)
        return out

    def _append(self, i: int, row: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / _name(i)
        line = json.dumps(row) + "\n"
        try:
            with open(path, "a+b") as f:
                torn = f.seek(0, os.SEEK_END) > 0 and f.seek(-1, os.SEEK_END) >= 0 and f.read(1) != b"\n"
                f.write((("\n" if torn else "") + line).encode())  # a torn line stays alone
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # what got out before the disk filled is a torn line: ended and skipped later
            if disk_full(e, self.folder):
                raise full_disk_error(path, needed=len(line)) from None
            raise

    def has_ended(self, i: int) -> bool:
        p = self.folder / _name(i)
        return p.is_file() and any("end" in _row(line) for line in p.read_text().splitlines() if '"end"' in line)

    def keep_state(self, i: int, write) -> None:
        """Keep candidate i's latest checkpoint (`write(tmp_path)` writes it), unless it has ended."""
        if self.has_ended(i):  # a checkpoint registered after the end line: nothing will resume it
            return
        self.keep(_state_name(i), write)

    def state(self, i: int) -> Path | None:
        """Candidate i's carried checkpoint, where it was cut off mid-run with one."""
        p = self.folder / _state_name(i)
        return p if p.is_file() and not self.has_ended(i) else None

    def keep(self, name: str, write) -> None:
        """A checkpoint kept under `name` (`write(tmp_path)` writes it) for the chunk after this one."""
        atomic_write(self.folder / name, write)  # a full disk: one line, the old checkpoint whole

    def kept(self, name: str) -> Path | None:
        p = self.folder / name
        return p if p.is_file() else None

    def drop(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    def epoch(self, i: int, metrics: dict) -> None:
        self._append(i, {k: metrics[k] for k in ROW_KEYS if k in metrics})

    def ended(self, i: int, why: str, correct: str | None = None) -> None:
        """The candidate's end line: why it ended and, for one that finished, which validation images its
        last epoch got right (kept once here rather than on every epoch's line)."""
        self._append(i, {"end": why, **({"val_correct": correct} if correct else {})})
        (self.folder / _state_name(i)).unlink(missing_ok=True)  # an ended candidate is never resumed


def _row(line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:  # torn
        return {}
    return row if isinstance(row, dict) else {}


def index_of(candidates: list[dict], variant: dict) -> int | None:
    """Which candidate a trial's variant is (they are compared as JSON, as they were stored)."""
    want = json.dumps(variant, sort_keys=True)
    return next((i for i, c in enumerate(candidates) if json.dumps(c, sort_keys=True) == want), None)
