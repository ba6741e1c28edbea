"""The names of proxyhpo's MLflow contract: tags, their values, params, metrics and artifact files.

Writers, readers and tests import these names instead of spelling them, so a rename cannot leave a
green test behind (DESIGN, "Contracts other parts rely on", MLflow). This module imports nothing: the
schema layer, the engines and the KFP components may all read it without loading MLflow.

A trial spec's own tags (``TrialSpec.tags``: ``arm``, ``repeat``, ``point``, ...) become MLflow tags
``proxyhpo.<key>`` (:func:`tag`); the ``*_KEY`` names are those keys, the ``*_TAG`` names the MLflow tags.

Example:
    >>> from proxyhpo.tracking import names
    >>> names.tag(names.ARM_KEY) == names.ARM_TAG == "proxyhpo.arm"
    True
"""

from __future__ import annotations

#: Every tag of ours starts with this.
PREFIX = "proxyhpo."


def tag(key: str) -> str:
    """The MLflow tag of a trial spec's tag ``key`` (``arm``): ``proxyhpo.<key>`` (``proxyhpo.arm``)."""
    return PREFIX + key


# --- MLflow's own -----------------------------------------------------------------------------------------------
#: MLflow's tag for a child run's parent.
PARENT_TAG = "mlflow.parentRunId"

# --- a trial spec's tag keys (TrialSpec.tags), each logged as proxyhpo.<key> --------------------------------------
#: a final model's spec carries its role too (the run's own role tag wins)
ROLE_KEY = "role"
STUDY_KEY = "study"
ARM_KEY = "arm"
REPEAT_KEY = "repeat"
POINT_KEY = "point"
FOLD_KEY = "fold"
TASK_KEY = "task"
ARCHITECTURE_KEY = "architecture"
PROPOSAL_ID_KEY = "proposal_id"
TRIAL_KEY_KEY = "trial_key"

# --- tags --------------------------------------------------------------------------------------------------------
#: The parent run's pipeline kind (``hpo``, ``proxy-data-study``, ``proxy-net-study``, ``automl-comparison``, ``trust``, ``nas``, ``search-bench``).
PIPELINE_TAG = "proxyhpo.pipeline"
#: What a run is: one of the ``ROLE_*`` values below.
ROLE_TAG = tag(ROLE_KEY)
#: A trial's search round.
ROUND_TAG = "proxyhpo.round"
#: A comparison study's arm (``full``, ``mi+labelcrop-4``, ``proxy-L3``, ``all-data``, ...); a NAS arm (``all``, ``proxy``).
ARM_TAG = tag(ARM_KEY)
#: A comparison study's repeat (``0``, ``1``, ...).
REPEAT_TAG = tag(REPEAT_KEY)
#: A grid study's grid point.
POINT_TAG = tag(POINT_KEY)
#: A NAS run's cross-validation fold.
FOLD_TAG = tag(FOLD_KEY)
#: A NAS search run's task index.
TASK_TAG = tag(TASK_KEY)
#: A NAS final network's architecture key.
ARCHITECTURE_TAG = tag(ARCHITECTURE_KEY)
#: The proposal a trial trains (search strategies' ask/tell id).
PROPOSAL_ID_TAG = tag(PROPOSAL_ID_KEY)
#: On an experiment, the study's name; on a grid study's trial, the comparison study's kind.
STUDY_TAG = tag(STUDY_KEY)
#: A child run's identity under its parent: the trial id (or a long task's id).
TRIAL_ID_TAG = "proxyhpo.trial_id"
#: On a pack's run, the trials it trained at once, comma-separated.
PACK_TRIALS_TAG = "proxyhpo.pack_trials"
#: The sha256 of what a trial trains (:func:`proxyhpo.resume.trial_key`).
TRIAL_KEY_TAG = tag(TRIAL_KEY_KEY)
#: How a trial ended: a :class:`proxyhpo.config.TrialState` value (``STATE_*`` below).
STATE_TAG = "proxyhpo.state"
#: The epoch at which early stopping stopped a trial.
STOPPED_TAG = "proxyhpo.stopped_at_epoch"
#: Why a run is FAILED (``terminated (SIGTERM)``, the trial's error, :data:`ORPHANED_REASON`, ...).
FAIL_REASON_TAG = "proxyhpo.fail_reason"
#: How many times a run was opened (absent: once); counted when a run is reopened by its identity.
ATTEMPT_TAG = "proxyhpo.attempt"
#: The KFP run id a parent run belongs to (the exit handler finds the run by it).
KFP_RUN_TAG = "proxyhpo.kfp_run_id"
#: The search strategy of the study, on its parent run (``search.strategy``: ``reinforce``, ``random``, ...).
STRATEGY_TAG = tag("strategy")
#: The host, pid and pid start time of the process that opened a run (to tell an orphan from a live run).
HOST_TAG = "proxyhpo.host"
PID_TAG = "proxyhpo.pid"
PID_STARTED_TAG = "proxyhpo.pid_started"
#: The sha256 of a stand-alone trial plan file (``proxyhpo train``): with the trial id, a stand-alone trial's identity.
PLAN_HASH_TAG = "proxyhpo.plan_sha256"
#: The sha256 of a study's resolved config, on its parent run (:func:`proxyhpo.resume.config_sha256`).
CONFIG_HASH_TAG = "proxyhpo.config_sha256"
#: on a locally launched study run: the shell command that started it, and resumes it (``proxyhpo status`` shows it)
COMMAND_TAG = "proxyhpo.command"

# the search benchmark's tags
#: Every run of one benchmark.
BENCH_ID_TAG = "proxyhpo.bench.id"
#: ``bench`` (the benchmark's own run) or ``search`` (one strategy and seed).
BENCH_ROLE_TAG = "proxyhpo.bench.role"
BENCH_STRATEGY_TAG = "proxyhpo.bench.strategy"
BENCH_SEED_TAG = "proxyhpo.bench.seed"
#: ``false`` on a trial the budget does not count.
BENCH_COUNTED_TAG = "proxyhpo.bench.counted"

# --- tag values --------------------------------------------------------------------------------------------------
#: ``proxyhpo.role`` values
ROLE_STUDY = "study"
ROLE_TRIAL = "trial"
ROLE_FINAL = "final"
ROLE_CALIBRATION = "calibration"
#: a pack of several trials trained at once: its run holds the machine's system metrics while it trains (no trial's own)
ROLE_PACK = "pack"
ROLE_NAS_SEARCH = "nas-search"
ROLE_NAS_FINAL = "nas-final"
#: ``proxyhpo.bench.role`` values
BENCH_ROLE_BENCH = "bench"
BENCH_ROLE_SEARCH = "search"
#: ``proxyhpo.state`` values (:class:`proxyhpo.config.TrialState`)
STATE_COMPLETE = "COMPLETE"
STATE_STOPPED = "STOPPED"
STATE_FAILED = "FAILED"
#: ``proxyhpo.fail_reason`` of a run whose process ended without closing it.
ORPHANED_REASON = "orphaned: its process ended without closing it"

# --- params ------------------------------------------------------------------------------------------------------
# besides the search space's hyper-parameter names
NETWORK_PARAM = "network"
DATA_PARAM = "data"
SEED_PARAM = "seed"
#: the learning rate's log10, beside ``lr``: MLflow's compare view draws params on linear axes
LOG10_LR_PARAM = "log10_lr"

# --- metrics of a trial run --------------------------------------------------------------------------------------
#: per validated epoch, as steps; its last step is the final Dice
VAL_DICE = "val_dice"
FINAL_VAL_DICE = "final_val_dice"
#: a trial stopped early: its validation Dice at the stop (no ``final_val_dice``: it did not train to the end)
DICE_AT_STOP = "dice_at_stop"
BEST_VAL_DICE = "best_val_dice"
#: Dice on the untouched internal test set (the study's held-out cases) with the best-validation weights
INTERNAL_TEST_DICE = "internal_test_dice"
#: Dice on the external test set with the best-validation weights
TEST_DICE = "test_dice"


def class_dice(metric: str, class_name: str) -> str:
    """The per-class metric of a multi-class task: ``<metric>_class_<name>``, the name lower-cased, runs of
    characters other than letters and digits as ``_`` (``class_dice(VAL_DICE, "enhancing tumour")`` is
    ``val_dice_class_enhancing_tumour``)."""
    slug = "".join(c if c.isascii() and c.isalnum() else "_" for c in class_name.lower())
    return f"{metric}_class_{'_'.join(part for part in slug.split('_') if part) or 'unnamed'}"
GPU_HOURS = "gpu_hours"
PROCESS_HOURS = "process_hours"
WALL_SECONDS = "wall_seconds"
EPOCHS_RUN = "epochs_run"
STEPS_RUN = "steps_run"
PACK_SIZE = "pack_size"
PEAK_GPU_MEM_BYTES = "peak_gpu_mem_bytes"
DATA_WAIT_FRACTION = "data_wait_fraction"

# --- metrics of a NAS search run, per episode as steps -----------------------------------------------------------
REWARD_MEAN = "reward_mean"
REWARD_MAX = "reward_max"
ENTROPY = "entropy"
BASELINE = "baseline"
SAME_AS_MOST_LIKELY = "same_as_most_likely"
MODE_FRACTION = "mode_fraction"
FAILED_CHILDREN = "failed_children"
EPISODE_SECONDS = "episode_seconds"
#: a NAS final network's Dice on its fold's test part, which no search read (nested cross-validation)
FOLD_TEST_DICE = "fold_test_dice"

# --- metrics of a parent run (the study's summary) ---------------------------------------------------------------
#: the final model's Dice on the untouched internal test set (the held-out cases) and on the external set
FINAL_INTERNAL_TEST_DICE = "final_internal_test_dice"
FINAL_TEST_DICE = "final_test_dice"
TOTAL_GPU_HOURS = "total_gpu_hours"
TOTAL_PROCESS_HOURS = "total_process_hours"
SEARCH_GPU_HOURS = "search_gpu_hours"
SEARCH_PROCESS_HOURS = "search_process_hours"
N_TRIALS = "n_trials"
N_FAILED_TRIALS = "n_failed_trials"
N_STOPPED_TRIALS = "n_stopped_trials"
TRIAL_EPOCHS_RUN = "trial_epochs_run"
TRIAL_EPOCHS_SAVED = "trial_epochs_saved"
N_FINAL_MODELS = "n_final_models"
N_FAILED_FINAL_MODELS = "n_failed_final_models"
SPEEDUP_VS_FULL = "speedup_vs_full"
SPEEDUP_VS_FULL_EQUAL_PACK = "speedup_vs_full_equal_pack"
HP_DISTANCE = "hp_distance"
PEARSON_R = "pearson_r"
SPEARMAN_RHO = "spearman_rho"
KENDALL_TAU = "kendall_tau"
#: an interval's bounds: ``pearson_r_low``, ``pearson_r_high``
LOW_SUFFIX = "_low"
HIGH_SUFFIX = "_high"
#: a comparison's per-search costs and spreads (also per arm, as ``<arm>_<name>``)
FINAL_VAL_DICE_STD = "final_val_dice_std"
FINAL_TEST_DICE_STD = "final_test_dice_std"
DEVICE_HOURS_PER_SEARCH = "device_hours_per_search"
EQUAL_PACK_HOURS_PER_SEARCH = "equal_pack_hours_per_search"
SELECTION_HOURS = "selection_hours"
#: the trust gate's verdict (``trust_passed`` is 1.0 or 0.0)
TRUST_PASSED = "trust_passed"
TRUST_VALUE = "trust_value"
TRUST_THRESHOLD = "trust_threshold"
#: the lower bound of the trust coefficient's one-sided interval (what the verdict compares), and its confidence
TRUST_LOWER_BOUND = "trust_lower_bound"
TRUST_CONFIDENCE = "trust_confidence"
#: a NAS study's proxy arm against the all-data arm
PROXY_SPEEDUP = "proxy_speedup"
PROXY_CV_DICE_CHANGE = "proxy_cv_dice_change"
#: the headline comparison (per lever also ``lever_share_<lever>``, ``lever_speedup_<lever>``)
HEADLINE_SPEEDUP = "headline_speedup"
HEADLINE_HOURS_FULL = "headline_hours_full"
HEADLINE_HOURS_LEVERS = "headline_hours_levers"
HEADLINE_DICE_FULL = "headline_dice_full"
HEADLINE_DICE_LEVERS = "headline_dice_levers"
HEADLINE_DICE_GAP = "headline_dice_gap"
HEADLINE_DICE_WITHIN_TOLERANCE = "headline_dice_within_tolerance"
HEADLINE_SPEEDUP_GOAL_MET = "headline_speedup_goal_met"
HEADLINE_GOAL_MET = "headline_goal_met"
#: how the two headline searches' trials ended: stopped early apart from failed
HEADLINE_FAILED_TRIALS_FULL = "headline_failed_trials_full"
HEADLINE_STOPPED_TRIALS_FULL = "headline_stopped_trials_full"
HEADLINE_FAILED_TRIALS_LEVERS = "headline_failed_trials_levers"
HEADLINE_STOPPED_TRIALS_LEVERS = "headline_stopped_trials_levers"
#: per round, as steps (the HPO report)
ROUND_MEAN_VAL_DICE = "round_mean_val_dice"
ROUND_MEAN_REWARD = "round_mean_reward"
CONTROLLER_ENTROPY = "controller_entropy"
#: the search benchmark's own run, and each strategy-and-seed run (with ``n_trials``, ``best_val_dice``, ``final_val_dice``, ``final_test_dice``)
BUDGET_HOURS = "budget_hours"
CALIBRATION_HOURS = "calibration_hours"
DEVICE_HOURS = "device_hours"
OVERRUN_HOURS = "overrun_hours"
N_STOPPED = "n_stopped"
TRIAL_EPOCHS = "trial_epochs"
#: the search benchmark's artifact of one strategy and seed
SEARCH_ARTIFACT = "search.json"

# --- artifact files ----------------------------------------------------------------------------------------------
#: the resolved study config, on the parent run (read back by the reports) ...
STUDY_ARTIFACT = "study.json"
#: ... and as YAML, the form people write it in (what the MLflow UI shows)
STUDY_YAML_ARTIFACT = "study.yaml"
#: MLflow's run description (Markdown), shown at the top of a run's page
DESCRIPTION_TAG = "mlflow.note.content"
#: the study config's keys a parent run logs as params: the columns its experiment's runs are compared on
COMPARED_PARAMS = (
    "selection.method",
    "selection.budget",
    "search.strategy",
    "search.rounds",
    "search.proposals_per_round",
    "training.data",
    "training.network",
    "training.epochs",
    "training.pack_size",
    "final.network",
    "final.epochs",
    "data.dataset",
)
#: the resolved config and the trial's spec, on a trial run
TRIAL_CONFIG_ARTIFACT = "trial_config.json"
#: the report's summary and text, on the parent run
SUMMARY_ARTIFACT = "summary.json"
REPORT_ARTIFACT = "report.md"
