"""A search kept in a ledger (orchestrator/run/ledger.py), without Ray: its candidates (drawn up front, or
read back), the rungs seeded from what the ledger holds, and its finalists over every chunk. The Tune
scheduler (tune_callbacks.LedgerScheduler) and the no-Ray runner (local.run_ledger_search) both use these."""

from __future__ import annotations

from orchestrator.config import SweepConfig, TrainConfig, resolve_path, to_dict
from orchestrator.paired import paired
from orchestrator.run.ledger import Entry, Ledger
from orchestrator.rungs import AsyncRungs
from orchestrator.space import draw_candidates
from trainables.config import unpack_mask
from trainables.losses import NEEDS_TEACHER


def open_ledger(cfg: SweepConfig):
    """(the Ledger, its candidates) of a search with sweep.ledger: drawn by train.seed, and its rungs set by
    the config (or the recorded rule), where it is new."""
    s = cfg.sweep
    identity = dict(
        train=to_dict(cfg.train), search_space=cfg.search_space, trials=cfg.trials, num_samples=s.num_samples
    )
    ledger = Ledger(resolve_path(s.ledger))
    drawn = draw_candidates(cfg.space(), s.num_samples, cfg.train.seed, cfg.trials)
    rungs = dict(grace=cfg.grace(), reduction_factor=cfg.reduction())
    return ledger, [e.variant for e in ledger.open(identity, drawn, rungs)]


def ledger_rungs(cfg: SweepConfig, ledger: Ledger) -> tuple[int, int]:
    """(grace period, reduction factor) of a ledger's search: as it began, else the config's."""
    r = ledger.rungs()
    return int(r.get("grace") or cfg.grace()), int(r.get("reduction_factor") or cfg.reduction())


def _macs(e: Entry) -> int:
    return int(e.rows[-1].get("macs", 0)) if e.rows else 0


def rank_candidates(entries: list[Entry]) -> tuple[list[Entry], str]:
    """The candidates that reported, best first by validation accuracy at any epoch, and the sentence that
    says how the winner was chosen: where the two best finished candidates both carry which validation images
    they got right, McNemar's test compares them, and a tie goes to the cheaper shape (fewer multiply-adds),
    not to the sign of a difference inside the noise."""
    ranked = sorted((e for e in entries if e.rows), key=lambda e: -e.best)
    done = [e for e in ranked if e.end == "finished" and e.correct]
    if len(done) < 2 or ranked[0] is not done[0]:
        return ranked, ""
    a, b = done[0], done[1]
    pair = paired(unpack_mask(a.correct), unpack_mask(b.correct))
    said = pair.sentence(f"c{a.index:03d}", f"c{b.index:03d}") + " (their last epochs)"
    if pair.tie:
        cheap = b if _macs(b) < _macs(a) else a
        said += (
            f"; the tie goes to the cheaper c{cheap.index:03d} ({_macs(cheap) / 1e6:.1f} M multiply-adds against "
            f"{_macs(b if cheap is a else a) / 1e6:.1f} M)"
        )
        if cheap is b:
            ranked.remove(b)
            ranked.insert(0, b)
    return ranked, said


def ledger_finalists(cfg: SweepConfig) -> tuple[list[TrainConfig], str]:
    """The `final.top` best candidates of a ledger (rank_candidates: a tie between the two best goes to the
    cheaper), best first, and how the winner was chosen; control: reference leaves the no-teacher ones out
    where a distillation candidate reported."""
    ledger, candidates = open_ledger(cfg)
    entries, said = rank_candidates(ledger.entries(candidates))
    ranked = [cfg.trial_config(e.variant) for e in entries]
    if cfg.final.control != "finalist" and any(c.loss in NEEDS_TEACHER for c in ranked):
        ranked = [c for c in ranked if c.loss in NEEDS_TEACHER]
    out: list[TrainConfig] = []
    for c in ranked:
        if c not in out:
            out.append(c)
    return out[: cfg.final.top], said


def seeded_rungs(entries: list[Entry], max_t: int, grace: int, rf: int) -> AsyncRungs:
    """ASHA's rungs holding every ended candidate's value at each rung it reached. A candidate without an end
    is training again (from its start, or from its checkpoint in an interrupted chunk resumed on the same
    machine): it is judged afresh at its next rung, against the others."""
    rungs = AsyncRungs(max_t, grace, rf)
    for e in entries:
        if e.end is not None:
            rungs.record(e.index, e.curve)
    return rungs
