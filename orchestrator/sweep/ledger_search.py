"""A search kept in a ledger (orchestrator/run/ledger.py): its candidates drawn up front, its rungs seeded
from every candidate recorded so far, each epoch written to the ledger as it is judged.

`LedgerScheduler` is Tune's scheduler for such a search: ASHA's asynchronous rule (regret.AsyncRungs, the
rule bench/search_regret.py replays) over the candidates' ledger records rather than over this Tune
experiment's trials alone, so a search run in chunks (one Tune experiment each, on machines that do not
share a run directory) cuts as one run would. It writes the ledger itself, in the order it decides: an
epoch's line, then the end line of a candidate it stops or that finished.
"""

from __future__ import annotations

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.run.ledger import Entry, Ledger, index_of
from orchestrator.sweep.regret import AsyncRungs
from trainables.config import from_report


class LedgerScheduler(FIFOScheduler):
    _supports_buffered_results = False  # one decision per epoch

    def __init__(self, ledger: Ledger, candidates: list[dict], max_t: int, grace: int, rf: int):
        super().__init__()
        self.ledger, self.candidates = ledger, candidates
        self.max_t, self.grace, self.rf = max_t, grace, rf
        self._rungs: AsyncRungs | None = None  # built from the ledger at the first result (also after a restore)

    def __getstate__(self):  # Tune pickles the scheduler: the rungs are rebuilt from the ledger, not pickled
        return {**self.__dict__, "_rungs": None}

    def rungs(self) -> AsyncRungs:
        if self._rungs is None:
            self._rungs = seeded_rungs(self.ledger.entries(self.candidates), self.max_t, self.grace, self.rf)
        return self._rungs

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        i = index_of(self.candidates, (trial.config or {}).get("_variant", {}))
        if i is None or "epoch" not in result or "val_acc" not in result:
            return TrialScheduler.CONTINUE
        metrics, epoch = from_report(result), int(result["epoch"])
        if metrics.get("diverged"):
            self.ledger.ended(i, f"diverged: {metrics['diverged']}")
            return TrialScheduler.STOP
        go_on = self.rungs().judge(i, epoch, float(result["val_acc"]))
        self.ledger.epoch(i, metrics)
        if epoch >= self.max_t:
            self.ledger.ended(i, "finished")
        elif not go_on:
            self.ledger.ended(i, f"stopped at epoch {epoch}")
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"Ledger ASHA: rungs {sorted(self.rungs().rungs)}, keep 1/{self.rf}"


def seeded_rungs(entries: list[Entry], max_t: int, grace: int, rf: int) -> AsyncRungs:
    """ASHA's rungs holding every ended candidate's value at each rung it reached. A candidate without an end
    is training again (from its start, or from its checkpoint in an interrupted chunk resumed on the same
    machine): it is judged afresh at its next rung, against the others."""
    rungs = AsyncRungs(max_t, grace, rf)
    for e in entries:
        if e.end is not None:
            rungs.record(e.index, e.curve)
    return rungs
