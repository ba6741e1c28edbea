"""tracking.names: the MLflow contract's names, declared once; writers and readers use nothing else."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxyhpo.tracking import names


def _declared(suffix: str) -> dict[str, str]:
    return {key: value for key, value in vars(names).items() if key.endswith(suffix) and key.isupper() and isinstance(value, str)}


def test_a_spec_tag_key_becomes_its_proxyhpo_tag() -> None:
    assert names.tag(names.ARM_KEY) == names.ARM_TAG == "proxyhpo.arm"
    for key, value in _declared("_KEY").items():
        tag = key.removesuffix("_KEY") + "_TAG"
        assert getattr(names, tag) == names.PREFIX + value, tag


@pytest.mark.parametrize("suffix", ["_TAG", "_KEY", "_PARAM", "_ARTIFACT"])
def test_no_two_names_of_a_kind_share_a_value(suffix: str) -> None:
    declared = _declared(suffix)
    assert declared and len(set(declared.values())) == len(declared), declared


def test_every_tag_is_ours_but_mlflows_parent_link_and_description() -> None:
    foreign = {key for key, value in _declared("_TAG").items() if not value.startswith(names.PREFIX)}
    assert foreign == {"PARENT_TAG", "DESCRIPTION_TAG"}
    assert (names.PARENT_TAG, names.DESCRIPTION_TAG) == ("mlflow.parentRunId", "mlflow.note.content")


def test_the_values_a_trial_run_is_tagged_with_are_the_trial_states() -> None:
    from proxyhpo.config import TrialState

    assert {names.STATE_COMPLETE, names.STATE_STOPPED, names.STATE_FAILED} == {state.value for state in TrialState}


def test_the_metrics_a_trial_run_logs_are_its_results_fields() -> None:
    """The trial writer logs each of these from the TrialResult field of the same name."""
    from proxyhpo.config import TrialResult

    logged = [names.GPU_HOURS, names.PROCESS_HOURS, names.WALL_SECONDS, names.EPOCHS_RUN, names.STEPS_RUN, names.PACK_SIZE,
              names.PEAK_GPU_MEM_BYTES, names.DATA_WAIT_FRACTION, names.TEST_DICE, names.FINAL_VAL_DICE, names.BEST_VAL_DICE, names.VAL_DICE]
    assert set(logged) <= set(TrialResult.model_fields)


def test_importing_the_names_loads_nothing_heavy() -> None:
    code = "import sys, proxyhpo.tracking.names; print(sorted(m for m in ('mlflow', 'torch', 'monai', 'kfp', 'minio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
