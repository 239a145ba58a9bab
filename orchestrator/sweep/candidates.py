"""A search kept in a ledger (orchestrator/run/ledger.py), without Ray: its candidates (drawn up front, or
read back), the rungs seeded from what the ledger holds, and its finalists over every chunk. The Tune
scheduler (tune_callbacks.LedgerScheduler) and the no-Ray runner (local.run_ledger_search) both use these."""

from __future__ import annotations

from orchestrator.config import SweepConfig, TrainConfig, resolve_path, to_dict
from orchestrator.run.ledger import Entry, Ledger
from orchestrator.space import draw_candidates
from orchestrator.sweep.regret import AsyncRungs
from trainables.losses import NEEDS_TEACHER


def open_ledger(cfg: SweepConfig):
    """(the Ledger, its candidates) of a search with sweep.ledger: drawn by train.seed where it is new."""
    s = cfg.sweep
    identity = dict(
        train=to_dict(cfg.train),
        search_space=cfg.search_space,
        trials=cfg.trials,
        num_samples=s.num_samples,
        grace=cfg.grace(),
        reduction_factor=cfg.reduction(),
    )
    ledger = Ledger(resolve_path(s.ledger))
    drawn = draw_candidates(cfg.space(), s.num_samples, cfg.train.seed, cfg.trials)
    return ledger, [e.variant for e in ledger.open(identity, drawn)]


def ledger_finalists(cfg: SweepConfig) -> list[TrainConfig]:
    """The `final.top` best candidates of a ledger by validation accuracy at any epoch, best first (control:
    reference leaves the no-teacher ones out where a distillation candidate reported)."""
    ledger, candidates = open_ledger(cfg)
    ranked = sorted(
        ((e.best, cfg.trial_config(e.variant)) for e in ledger.entries(candidates) if e.rows),
        key=lambda x: -x[0],
    )
    if cfg.final.control != "finalist" and any(c.loss in NEEDS_TEACHER for _, c in ranked):
        ranked = [(v, c) for v, c in ranked if c.loss in NEEDS_TEACHER]
    out: list[TrainConfig] = []
    for _, c in ranked:
        if c not in out:
            out.append(c)
    return out[: cfg.final.top]


def seeded_rungs(entries: list[Entry], max_t: int, grace: int, rf: int) -> AsyncRungs:
    """ASHA's rungs holding every ended candidate's value at each rung it reached. A candidate without an end
    is training again (from its start, or from its checkpoint in an interrupted chunk resumed on the same
    machine): it is judged afresh at its next rung, against the others."""
    rungs = AsyncRungs(max_t, grace, rf)
    for e in entries:
        if e.end is not None:
            rungs.record(e.index, e.curve)
    return rungs
