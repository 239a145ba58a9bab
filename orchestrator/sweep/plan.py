"""The whole run's plan, from speeds measured on this machine before the expensive work: the teacher's
cache (its rate timed on the validation forwards the sweep runs anyway), the search and the final stage
(each student's training rate timed by a few steps of `train_speed`), the export. Logged at the start, so
that a budget this CPU cannot hold is said before the time is spent, not found out at the end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from orchestrator.config import SweepConfig, to_dict
from orchestrator.space import grid_size
from orchestrator.sweep.final_budget import EXPORT_S, final_epoch_s, final_stage_minutes, fit_final_epochs
from trainables.losses import NEEDS_TEACHER


@dataclass
class Plan:
    """The run's plan, made once before the cache from speeds measured here, and passed to the stages that
    use it (the final stage's length where the search was skipped); `record()` is its meta entry."""

    cache_s: float
    search_s: float
    final_s: float
    export_s: float
    search_trial_epochs: float
    final_epochs: int
    final_cap: int
    final_floor: int  # final.min_epochs
    epoch_s: dict[str, float]  # seconds per epoch of each student, as a trial runs it here
    teacher_img_s: float = 0.0  # the teacher's forwards a second, timed on the validation images
    final_speedup: float = 1.0  # a final trial's epoch against a search trial's (its threads, alone)
    search_skipped: str = ""  # why the search does not run (skip_check), "" where it does
    grown: int = 0  # candidates the search grew to (grow_candidates), 0 where it did not
    grow_why: str = ""  # what the budget affords a grown search, where the config has one
    layout: str = ""  # the trials' memory layout, where train.layout auto had the plan time both
    layout_rates: dict | None = None  # layout -> student -> training images/s, as timed for the choice

    def record(self) -> dict:
        out = dict(
            estimate_s=self.total_s,
            cache_s=self.cache_s,
            search_s=self.search_s,
            search_trial_epochs=self.search_trial_epochs,
            final_s=self.final_s,
            final_epochs=self.final_epochs,
            teacher_img_s=self.teacher_img_s,
            epoch_s=self.epoch_s,
            final_speedup=self.final_speedup,
        )
        if self.layout:
            out.update(layout=self.layout, layout_img_s=self.layout_rates)
        if self.grow_why:
            out.update(grown=self.grown, grow=self.grow_why)
        return {**out, "search_skipped": self.search_skipped} if self.search_skipped else out

    def beside_search_s(self, cfg: SweepConfig, final_slots: int) -> float:
        """What a grown search must leave room for: the cache, the final stage at its cap (final.epochs, at
        the measured epoch and speed-up) and the export."""
        slowest = max(self.epoch_s.values()) if self.epoch_s else 0.0
        cap_s = cfg.final.epochs * final_epoch_s(cfg, slowest, self.final_speedup, final_slots)
        return self.cache_s + cap_s + self.export_s

    @property
    def total_s(self) -> float:
        return self.cache_s + self.search_s + self.final_s + self.export_s

    def line(self, budget_min: float = 0.0) -> str:
        m = lambda s: f"{s / 60:.1f}"  # noqa: E731
        parts = [f"cache {m(self.cache_s)}", f"search {m(self.search_s)} (~{self.search_trial_epochs:g} trial-epochs)"]
        if self.final_cap:
            parts.append(
                f"final {m(self.final_s)} ({self.final_epochs} epochs"
                + (f" of a cap of {self.final_cap}" if self.final_epochs < self.final_cap else "")
                + ")"
            )
        parts.append(f"export {m(self.export_s)}")
        rates = ", ".join(
            f"{k} {v:.2g} s an epoch" if v < 10 else f"{k} {v:.0f} s an epoch" for k, v in self.epoch_s.items()
        )
        text = f"plan: ~{m(self.total_s)} min on this CPU: {', '.join(parts)} [measured here: {rates}]"
        if budget_min and self.total_s > budget_min * 60 * 1.05:
            text += f"; OVER the {budget_min:g}-minute budget: this CPU cannot hold it with this config"
            text += (
                f" (its final stage keeps the {self.final_floor} epochs the result needs, final.min_epochs; "
                "this run takes the estimate above)"
                if self.final_cap and self.final_epochs <= self.final_floor
                else " (fewer or cheaper trials, fewer epochs, or a faster CPU)"
            )
        return text


def make_plan(
    cfg: SweepConfig,
    epoch_s: dict[str, float],
    cache_forwards: int,
    teacher_rate: float,
    slots: int,
    elapsed_s: float = 0.0,
    final_speedup: float = 1.0,
    final_slots: int | None = None,
    members_s: float = 0.0,
    search: bool = True,
) -> Plan:
    """The stages' estimated wall times, `elapsed_s` into the run. Search: ASHA's expected trial-epochs
    (asha_epochs: every trial to the first rung, 1/rf of them to each next), `slots` trials at a time. Final:
    the top finalists x seeds at the slowest student's epoch (divided by `final_speedup`, its measured gain at
    final.cpus_per_trial threads), `final_slots` at a time, within what the budgets leave it once the cache
    and the search are done (final_stage_minutes, as the driver fits it then). The cache: the teacher's
    missing forwards at its rate, plus `members_s` for an ensemble's members. `search` False: the plan
    without the search stage (skip_check)."""
    t, f = cfg.train, cfg.final
    n_trials = search_trials(cfg)
    per_trial = asha_epochs(t.epochs, cfg.grace(), cfg.reduction())
    slowest = max(epoch_s.values()) if epoch_s else 0.0
    search_epochs = n_trials * per_trial if search else 0
    search_s = (
        max(t.epochs * slowest, search_epochs * slowest / max(1, slots)) if search else 0.0
    )  # one goes to its end
    final_s, final_epochs = 0.0, 0
    cache_s = (cache_forwards / teacher_rate if teacher_rate and cache_forwards else 0.0) + members_s
    final_minutes = final_stage_minutes(cfg, elapsed_s + cache_s + search_s)
    if f.epochs:
        fslots = final_slots if final_slots is not None else slots
        fastest = slowest / max(final_speedup, 1e-9)
        per_epoch = final_epoch_s(cfg, slowest, final_speedup, fslots)
        final_epochs = (
            fit_final_epochs(f.epochs, final_minutes, [fastest] * f.top, f.seeds, fslots, f.min_epochs)
            if final_minutes
            else f.epochs
        )
        final_s = final_epochs * per_epoch
    return Plan(
        cache_s,
        search_s,
        final_s,
        EXPORT_S,
        search_epochs,
        final_epochs,
        f.epochs,
        f.min_epochs,
        epoch_s,
        teacher_img_s=teacher_rate,
        final_speedup=final_speedup,
    )


def grow_candidates(cfg: SweepConfig, epoch_s: dict[str, float], slots: int, fixed_s: float) -> tuple[int, str]:
    """How many candidates of grow.epochs the run's budget affords (GrowSettings), `slots` at a time at the
    slowest student's measured epoch, beside `fixed_s` (what the run has spent, the cache, the final stage at
    its cap and the export); and the sentence that says so. 0 where grow has no space, or fewer than
    grow.min_candidates fit (the config's own search stage runs then); at most grow.max_candidates."""
    from orchestrator.rungs import auto_rungs

    g = cfg.grow
    if not g.search_space or not cfg.minutes or not epoch_s:
        return 0, ""
    grace, rf, _ = auto_rungs(g.epochs)  # the grown search's rungs: the recorded regret rule's
    per = asha_epochs(g.epochs, grace, rf)
    candidate_s = per * max(epoch_s.values())
    left = cfg.minutes * 60 - fixed_s
    n = min(g.max_candidates, int(max(0.0, left) // candidate_s) * max(1, slots))
    said = (
        f"the {cfg.minutes:g}-minute budget leaves ~{max(0.0, left) / 60:.0f} min beside the final stage at its "
        f"{cfg.final.epochs} epochs: room for {n} candidate(s) of {g.epochs} epochs ("
        + (f"{per:.1f} epochs each on average under ASHA's rungs, " if per < g.epochs else "")
        + f"~{candidate_s / 60:.1f} min each here, {slots} at a time)"
    )
    if n < g.min_candidates:
        return 0, f"{said}; a search needs at least grow.min_candidates ({g.min_candidates}): not grown"
    return n, f"{said}: the search grows to {n} random draws from grow.search_space, judged at the rule's rungs"


def grow_config(cfg: SweepConfig, candidates: int) -> SweepConfig:
    """The config's search stage grown (grow_candidates): `candidates` random draws from grow.search_space of
    grow.epochs each, judged at the regret rule's rungs (grace_period and reduction_factor auto), in place of
    its trials."""
    g = cfg.grow
    return dataclasses.replace(
        cfg,
        search_space=dict(g.search_space),
        trials=[],
        train=dataclasses.replace(cfg.train, epochs=g.epochs),
        sweep=dataclasses.replace(cfg.sweep, num_samples=candidates, grace_period="auto", reduction_factor="auto"),
    )


def check_finalists(cfg: SweepConfig) -> list[dict]:
    """Where the search cannot change what the final stage trains, the finalists' settings (train keys),
    whatever the search finds; else []. That holds when there is no search space, the control is a reference
    row only (final.control), and the distillation trials are no more than final.top: each is a finalist.
    Such a search is a check of distillation against its control, not a choice."""
    f = cfg.final
    if not f.epochs or cfg.search_space or f.control != "reference" or cfg.sweep.num_samples > 1 or f.top > 1:
        return []
    kd = [t for t in (cfg.trials or [{}]) if t.get("loss", cfg.train.loss) in NEEDS_TEACHER]
    return [{**to_dict(cfg.train), **kd[0]}] if len(kd) == 1 else []


def skip_check(cfg: SweepConfig, with_search: Plan, without: Plan) -> str:
    """Why the search is skipped, or "" where it runs: it is a check only (check_finalists) and the run's
    budget cannot spare it, that is with it the final stage would get no more than the epochs the result
    needs (final.min_epochs), or the run would go over its budget to keep them."""
    floor = cfg.final.min_epochs
    if not cfg.minutes or not check_finalists(cfg) or with_search.final_epochs > floor:
        return ""
    return (
        f"the search is a check of distillation against its no-teacher control that cannot change the finalist "
        f"(final.control: reference), and on this CPU it would take ~{with_search.search_s / 60:.1f} of the "
        f"{cfg.minutes:g}-minute budget, leaving the final stage no more than the {floor} epochs the result needs "
        f"(final.min_epochs): skipped, the final stage trains {without.final_epochs} epochs "
        f"(with the check: {with_search.final_epochs})"
    )


def asha_epochs(max_t: int, grace: int, rf: int) -> float:
    """A search trial's expected epochs under successive halving: every trial to the first rung, 1/rf of
    them on to the next, 1/rf^2 to the one after, and so on to the end."""
    from orchestrator.rungs import milestones

    marks = [*milestones(max_t, grace, rf), max_t]
    return sum((b - a) / rf**i for i, (a, b) in enumerate(zip([0, *marks], marks)))


def search_trials(cfg: SweepConfig) -> int:
    """How many trials the search makes: its explicit trials (or one) x num_samples x the grids' sizes."""
    return max(1, len(cfg.trials) or 1) * max(1, cfg.sweep.num_samples) * grid_size(cfg.space())


def search_statement(cfg: SweepConfig) -> dict:
    """What the search stage is, said plainly at the start of the run and kept in its meta record: how many
    candidates, proposed by what, cut where by ASHA (and why there); or, where ASHA can cut nothing (a
    grace period at the trials' length, or fewer trials than one rung keeps), that it does not search and
    what it does instead."""
    from orchestrator.rungs import auto_rungs, milestones

    n, t, s = search_trials(cfg), cfg.train.epochs, cfg.sweep
    grace, rf = cfg.grace(), cfg.reduction()
    auto = "auto" in (s.grace_period, s.reduction_factor)
    why = auto_rungs(t)[2] if auto else f"grace period {grace} of {t} epochs, 1/{rf} kept (set in the config)"
    marks = milestones(t, grace, rf)
    sampled = any(d.sampled for d in cfg.space().values())
    by = "Optuna's TPE" if s.searcher == "optuna" else ("random draws" if sampled else "a fixed list")
    out = dict(trials=n, searcher=s.searcher, grace=grace, reduction_factor=rf, rungs=marks, rule=why)
    if n < 3 or n <= rf:
        control = any(loss in ("ce", "mse") for loss in cfg.losses())
        kinds = "KD against its no-teacher control" if control else "its trials"
        out["searches"] = False
        out["statement"] = (
            f"this run does not search: {n} trial(s) of {t} epochs compare {kinds}"
            + ("; then it trains one recipe (the final stage)" if cfg.final.epochs else "")
            + ". A search needs more candidates than one ASHA rung keeps and trials long enough to be judged "
            "(configs/search.yaml; experiments/search_fidelity measures how early a trial can be judged)"
        )
    elif not marks:
        out["searches"] = True
        out["statement"] = (
            f"search: {n} candidates from {by} ({s.searcher}), each trained to its end: ASHA judges "
            f"none early, since {why}"
        )
    else:
        out["searches"] = True
        out["statement"] = (
            f"search: {n} candidates from {by} ({s.searcher}), ASHA judging them at epochs "
            f"{', '.join(map(str, marks))} of {t} "
            f"and keeping 1/{rf} at each; {why}"
        )
    return out
