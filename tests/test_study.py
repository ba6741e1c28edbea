"""proxyhpo.study: the pipeline's start and close steps of a study run."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo import tracking
from proxyhpo.tracking import names


def test_open_study_checks_the_compiled_shape_before_opening_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's start-study step: a study edited to another shape fails at once, with nothing logged."""
    from proxyhpo.config import DataConfig, PipelineShape, SearchConfig, StudyConfig, StudyRun
    from proxyhpo.errors import ConfigError
    from proxyhpo.study import close_study, open_study

    uri = f"sqlite:///{tmp_path / 'open.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = StudyConfig(name="open-study", data=DataConfig(dataset="d"), search=SearchConfig(rounds=5))
    out = tmp_path / "study_run.json"
    with pytest.raises(ConfigError, match="search.rounds is 5 but this pipeline was compiled for 3"):
        open_study(study, pipeline="hpo", pipeline_run="kfp-1", compiled=PipelineShape(rounds=3, gpus=1), out=out)
    assert not out.exists()
    assert tracking.client(uri).get_experiment_by_name("open-study") is None  # no study run was opened

    run = open_study(study, pipeline="hpo", pipeline_run="kfp-2", compiled=study.shape, out=out)
    assert StudyRun.read(out) == run and run.experiment == "open-study"
    opened = tracking.client(uri).get_run(run.run_id)
    assert (opened.info.status, opened.data.tags[names.KFP_RUN_TAG], opened.data.params["search.rounds"]) == ("RUNNING", "kfp-2", "5")

    assert close_study(study, pipeline_run="kfp-2", succeeded=True) == []  # the report closed it
    assert tracking.client(uri).get_run(run.run_id).info.status == "RUNNING"
    assert close_study(study, pipeline_run="kfp-2", succeeded=False) == [run.run_id]
    assert tracking.client(uri).get_run(run.run_id).info.status == "FAILED"
