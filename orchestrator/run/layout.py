"""A run directory's layout: every file name the project writes into it, in one place.

runs/<name>/
  kdsweep_config.json   what the run computes (its identity), written when the run is claimed
  kdsweep_meta.json     teacher facts, wall time: written last, when the run has finished
  results.csv           one row per trial (search and final)
  <trial>/              Tune's trial directories (result.json, params.json, checkpoint_*/checkpoint.pt,
                        fatal_error.txt where its worker died of a signal)
  final/                the final stage's Tune experiment; final_base.json: the winner's settings
  search_skipped.json   why the search did not run, where the plan skipped it (plan.skip_check)
  search_grown.json     how many candidates the search grew to and why, where it grew (plan.grow_candidates)
"""

from __future__ import annotations

from trainables.config import CKPT_FILE, FATAL_FILE  # noqa: F401  (written by the trainable, read here)

# a trial's directory (orchestrator/run/trial.py)
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.txt"

CONFIG_FILE = "kdsweep_config.json"
META_FILE = "kdsweep_meta.json"
RESULTS_FILE = "results.csv"
FINAL_DIR = "final"
FINAL_BASE_FILE = "final_base.json"
CLAIM_LOCK = ".kdsweep_claim.lock"
SKIPPED_FILE = "search_skipped.json"
GROWN_FILE = "search_grown.json"
