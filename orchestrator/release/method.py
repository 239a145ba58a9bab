"""The report's method text: plain paragraphs read from the run (its config, its trials, its teacher), so they
say what this run did: a no-teacher winner is described as such, a clean-mode teacher as such."""

from __future__ import annotations

from pathlib import Path

from orchestrator.release import results as results_mod
from orchestrator.run.io import project_relative
from trainables.ema import BN_IMAGES
from trainables.losses import LOSSES, NEEDS_TEACHER

MODES = {
    "views": "its logits were computed once for every (training image, augmentation view) pair and each student "
    "step replays a view with the teacher's exact logits for it (consistent teaching)",
    "clean": "its logits were computed once per clean training image; the student's shifted/flipped (and erased) "
    "views are taught with the clean image's logits",
    "live": "it ran on every student batch (the slow reference mode; with train.mix, on the very mixed images "
    "the student saw: function matching)",
    "mixed": "its logits were computed once for each of a fixed number of seeded mixes per training image (the "
    "image and another, each shifted/flipped, blended by mixup or cutmix), and each student step rebuilds one "
    "such mix exactly and matches the teacher's logits on it (function matching, cached)",
}


# where a run that skips its control check points the reader instead (records, not this run's figures)
CONTROL_RECORDS = (
    "experiments/fast_recipe (2 epochs, the default's student: a tie within noise) and "
    "bench/results/kd_vs_control.json (6 epochs on 15,000 images, 3 seeds each: the default's KD recipe 0.876 "
    "on validation against the label-smoothed control's 0.872)"
)


def _schedule(win: dict) -> str:
    """The learning rate's schedule in words (wsd: where it warms, holds and cools; its branches)."""
    if win.get("schedule") != "wsd":
        return f"{win['schedule']} schedule"
    out = (
        f"warmup-stable-decay schedule (warm-up over the first {win['warmup_frac']:.0%} of the steps, the peak held, "
        f"a 1 - sqrt cool-down to zero over the last {win['decay_frac']:.0%})"
    )
    if win.get("branches"):
        out += (
            f" with cool-down branches read off it at {', '.join(str(b) for b in win['branches'])} epochs "
            "(their results are recorded; the run itself is what ships)"
        )
    return out


def is_kd(loss: str) -> bool:
    return loss in NEEDS_TEACHER


def tag(cfg: dict) -> str:
    loss = cfg.get("loss", "?")
    if loss in ("ce", "mse"):
        ls = cfg.get("label_smoothing") or 0
        return f"{loss}" + (f" ls{ls:g}" if ls else "")
    extra = f" b{cfg.get('beta'):g}" if loss == "dkd" else ""
    return f"{loss} T{cfg.get('temperature', 0):g} a{cfg.get('alpha', 0):g}{extra}"


MISSION_PARAMS = 23_528_522  # the course's ResNet-50 (torchvision layout, 10 classes): torchinfo's count


def named(path: str) -> str:
    """A file as a report names it: relative to the project where it lies inside it, else by its name alone
    (a path on the machine that built the run means nothing to a reader; the sha256 beside it identifies it)."""
    rel = project_relative(path)
    return Path(rel).name if Path(rel).is_absolute() else rel


def tta_text(m: dict) -> str:
    """What the shipped model averages over, and what validation said about it."""
    if by := m.get("val_acc_by_tta"):  # export --tta auto measured each view set
        said = ", ".join(f"{k} {v:.4f}" for k, v in by.items())
        return f"{m['tta']}, the best on validation of the view sets tried ({said})"
    plain, flip = m.get("val_acc_plain"), m.get("val_acc_flip")
    if plain is None or flip is None:
        return m.get("tta", "none")
    if m.get("tta") == "flip":
        return f"horizontal flip (logits averaged): validation {flip:.4f} against {plain:.4f} without"
    asked = (m.get("config") or {}).get("tta") == "flip"
    return (
        f"none: {'train.tta flip did not help here' if asked else 'not asked for'} "
        f"(validation {plain:.4f}; flip-averaged {flip:.4f})"
    )


def method_text(ts: list[dict], metrics: dict, run_meta: dict, run_cfg: dict) -> list[str]:
    """Plain paragraphs generated from the run: what was compared, how, and what won."""
    win = metrics["config"]
    t = run_meta.get("teacher") or {}
    paras = []
    if t:
        forwards = run_meta.get("teacher_forwards", 0)
        if t.get("mode") == "live":
            how = (
                "inside every distillation trial, one forward per training image per epoch, on the view the student saw"
            )
        elif not forwards:
            how = "none: a cache hit, computed by an earlier run; no trial ran the teacher network"
        else:
            how = "once, then shared with the trials; no trial ran the teacher network"
        paras.append(
            f"**Teacher.** A {t.get('arch')} with {t.get('params', 0):,} parameters, {t.get('val_acc', 0):.2%} on the "
            f"validation split, from `{named(t.get('path') or '')}` "
            f"(sha256 {str(t.get('sha256'))[:12]}…). Teacher mode "
            f"`{t.get('mode')}`: {MODES.get(t.get('mode'), '')}. This run made {forwards:,} teacher forward passes "
            f"over training images ({how})."
        )
        if win.get("mix", "none") != "none":
            paras.append(
                f"**Function matching.** The student trained on {win['mix']} images: each a mix of two training "
                f"images, lambda ~ Beta({win['mix_alpha']:g}, {win['mix_alpha']:g}) per image, and the teacher "
                + (
                    "scored exactly that mixed image, live,"
                    if t.get("mode") == "live"
                    else f"had scored exactly that mixed image, one of "
                    f"{(run_cfg.get('teacher') or {}).get('mixed_views', '?')} seeded mixes per training image "
                    "cached once,"
                )
                + f" its only target (alpha 1: no hard label), for "
                f'{win.get("epochs")} epochs (Beyer et al. 2022, "Knowledge distillation: A good teacher is patient '
                'and consistent").'
            )
        if t.get("ensemble"):
            names = ", ".join(f"{m['arch']} ({m['val_acc']:.2%}, `{Path(m['path']).name}`)" for m in t["ensemble"])
            paras.append(
                f"**Teacher ensemble.** The distillation target is the average of the teacher's logits and those of "
                f"{len(t['ensemble'])} more model(s) on the same view: {names}; the average scores "
                f"{t.get('ensemble_val_acc', 0):.2%} on the validation split. Each member's logits are cached like "
                f"the teacher's."
            )
    else:
        paras.append("**Teacher.** None: every loss in this run trains on the labels only.")
    a = run_cfg.get("augment", {})
    fam = metrics["student"]
    budget = metrics.get("budget", 100_000)
    paras.append(
        f"**Student.** `{fam}` {metrics.get('student_kwargs') or ''}: {metrics['params']:,} parameters "
        f"({metrics['params'] / budget:.1%} of the {budget:,} budget, counted by torchinfo)"
        + (f", {t['params'] / metrics['params']:.0f}x fewer than the teacher" if t.get("params") else "")
        + ". "
        + (
            "Its size is the budget's: the family's widths were fitted so that the count stays at or under it"
            if metrics["params"] >= 0.9 * budget
            else "It is well under the budget (a small variant)"
        )
        + " (`kdsweep students` lists every registered student with its count and measured training speed)."
    )
    loss = LOSSES.get(win["loss"])
    formula, paper = (loss.formula, loss.paper) if loss else (win["loss"], "")
    alpha = win.get("alpha", 0)
    formula = formula.format(
        alpha=f"{alpha:g}",
        one_minus_alpha=f"{1 - alpha:g}",
        beta=f"{win.get('beta', 0):g}",
        T=f"{win.get('temperature', 0):g}",
    )
    ls = win.get("label_smoothing") or 0
    paras.append(
        f"**Loss of the exported student.** `{win['loss']}` ({paper}): {formula}"
        + (f", CE_ls with label smoothing {ls:g}" if ls else ", CE_ls without label smoothing")
        + (
            f"; the teacher term's weight rose linearly from 0 over the first {win['kd_warmup']} epochs"
            if win.get("kd_warmup")
            else ""
        )
        + "."
    )
    paras.append(
        f"**Training.** {win['optimizer'].upper()}"
        f"{' (Nesterov, momentum ' + format(win['momentum'], 'g') + ')' if win['optimizer'] == 'sgd' else ''}, "
        f"peak learning rate {win['lr']:g}, {_schedule(win)}, weight decay {win['weight_decay']:g}, "
        f"batch {win['batch_size']}, {win['epochs']} epochs, precision {metrics.get('train_precision')}. "
        f"Augmentation: random shift up to {a.get('shift')} px"
        + (", horizontal flip" if a.get("flip") else "")
        + (
            f", random erasing with probability {win['erase']:g} "
            "(after the teacher's view: the teacher scored the uncut image)"
            if win.get("erase")
            else ""
        )
        + "."
        + (
            " Evaluation and the export use an exponential moving average of the weights "
            f"(decay {win['ema']:g} per step"
            + ("; BN statistics averaged too" if win.get("ema_bn") == "average" else "")
            + (
                f"; BN statistics recomputed for the averaged weights on {BN_IMAGES:,} training images before each "
                "evaluation"
                if win.get("ema_bn") == "recompute"
                else ""
            )
            + ")."
            if win.get("ema")
            else ""
        )
    )
    pruned = [x for x in ts if x["config"].get("prune_from")]
    if pruned:
        sources = sorted(
            {Path(x["config"]["prune_from"]).parent.name + "/" + Path(x["config"]["prune_from"]).name for x in pruned}
        )
        imps = sorted({x["config"].get("prune_importance") for x in pruned})
        p = metrics.get("pruned")
        paras.append(
            f"**Pruning.** {len(pruned)} trial(s) started from a trained student wider than the budget "
            f"({', '.join(sources)}), removed whole channels with Torch-Pruning (DepGraph, Fang et al. 2023; "
            f"importance: {', '.join(imps)}) until at most {pruned[0]['config'].get('prune_to'):,} parameters "
            "remained, then fine-tuned with the loss below. "
            + (
                f"The exported student is one of them: {p['source']} pruned from {p['params_before']:,} to "
                f"{p['params_after']:,} parameters in {p['steps_taken']} step(s) by {p['importance']} importance."
                if p
                else "The exported student was designed at the budget, not pruned."
            )
        )
    s = run_cfg.get("sweep", {})
    search = [x for x in ts if x["stage"] == "search"]
    final = [x for x in ts if x["stage"] == "final"]
    variants = sorted({tag(x["config"]) + f" ({x['config'].get('student')})" for x in search})
    space = run_cfg.get("search_space") or {}
    local = str(run_meta.get("trained_with", "")).startswith("kdsweep train")
    if local:  # `kdsweep train`: explicit trials run to the end, no search, no Ray
        search, final = final, []
        paras.append(
            f"**Trials.** {len(search)} trials ({', '.join(sorted({tag(x['config']) for x in search}))}), each "
            f"trained to its last epoch without Ray ({run_meta['trained_with']}), no early stopping."
        )
    elif (said := run_meta.get("search") or {}).get("skipped"):
        paras.append(f"**Search.** Not run: {said['skipped']}.")
    else:
        acc = results_mod.search_account(ts, run_meta)
        cuts = ", ".join(f"{n} at epoch {e}" for e, n in acc["cut_at"].items())
        paras.append(
            f"**Search.** {len(search)} Ray Tune trials"
            + (f" over {', '.join(variants)}" if len(variants) <= 8 else "")
            + (f"; sampled keys: {', '.join(space)}" if space else "")
            + ", proposed by "
            + ("Optuna's TPE" if acc["searcher"] == "optuna" else "random draws or the listed trials")
            + ", "
            f"{s.get('max_concurrent_trials')} at a time with {s.get('cpus_per_trial')} CPU each, "
            "ASHA early stopping on validation accuracy "
            f"(grace period {said.get('grace', s.get('grace_period'))} epochs, "
            f"reduction factor {said.get('reduction_factor', s.get('reduction_factor'))}, "
            f"at most {run_cfg['train']['epochs']} epochs); "
            f"{sum(x['status'].startswith('stopped') for x in search)} stopped early"
            + (f" ({cuts})" if cuts else "")
            + (
                f", {failed} failed (why: the table's status)"
                if (failed := sum(x["status"].startswith("failed") for x in search))
                else ""
            )
            + f"; {acc['trial_epochs']} trial-epochs, {acc['core_h']:.2f} core-hours in all."
            + (
                f" Would a cut trial have won? {chk['ahead_when_cut']} of the {chk['cut']} cut were ahead of the "
                f"winner when cut; by the recorded curves, configurations that far behind at that point finished "
                f"ahead {chk['expected']:.2f} times in {chk['judged']} such cuts."
                if (chk := acc.get("cut_check")) and chk["expected"] is not None
                else ""
            )
            + (
                f" Why the first rung is where it is: {said['rule']}."
                if said.get("rungs") and said.get("rule")
                else f" Said at its start: {said['statement']}."
                if said.get("statement")
                else ""
            )
        )
    if final:
        settings = sorted({tag(x["config"]) for x in final})
        paras.append(
            f"**Final stage.** The search's {len(settings)} best setting(s) by "
            f"validation accuracy ({', '.join(settings)}) were retrained from "
            f"scratch for {final[0]['epochs']} epochs, {len(final)} trial(s) in all; the export is the best of those "
            "checkpoints by validation accuracy."
        )
    kd = [x for x in search if is_kd(x["config"].get("loss", ""))]
    ctl = [x for x in search if not is_kd(x["config"].get("loss", ""))]
    if (run_meta.get("search") or {}).get("skipped"):
        paras.append(
            "**Compared.** The no-teacher control was not run this time (the search above was skipped). "
            f"The project's recorded comparisons on the same split, not this run: {CONTROL_RECORDS}."
        )
    elif kd and ctl:
        bk, bc = max(kd, key=lambda x: x["best_val_acc"]), max(ctl, key=lambda x: x["best_val_acc"])
        verdict = "distillation won" if bk["best_val_acc"] > bc["best_val_acc"] else "the no-teacher control won"
        paras.append(
            f"**Compared.** {'Among the trials' if local else 'In the search'}, "
            f"the best distilled trial ({tag(bk['config'])}) reached "
            f"{bk['best_val_acc']:.2%} validation accuracy against {bc['best_val_acc']:.2%} for the best no-teacher "
            f"control ({tag(bc['config'])}): {verdict} at this length ({bk['epochs']} epochs at most, one seed, "
            "so differences under about 0.3 points are within noise)."
        )
    if metrics.get("exported_trial"):
        paras.append(
            f"**Exported trial.** Named at export (`--trial {metrics['exported_trial']}`): its best epoch by "
            "validation accuracy, not necessarily the run's best trial."
        )
    paras.append(
        "**Data.** Fashion-MNIST: 60,000 training images cut into a seeded, stratified training/validation split; "
        f"every choice above ({'' if local else 'ASHA, '}the winner, the best epoch) used validation accuracy only. "
        "The 10,000 test "
        "images were read once, at export, to measure the figure below and write the submission."
    )
    return paras
