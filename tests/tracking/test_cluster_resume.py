"""``proxyhpo run CONFIG --host URL --resume RUN`` resolves the stopped cluster run's MLflow parent (a real ``mlflow
server``) and counts the trials kept for it in the bucket (SeaweedFS); the new run's first task reopens that parent."""

from __future__ import annotations

import pytest

from proxyhpo import resume, storage, tracking
from proxyhpo.catalogue import shipped_study
from proxyhpo.errors import ConfigError
from proxyhpo.cluster_resume import reopen_parent, resolve_parent


@pytest.fixture
def stopped_cluster_run(mlflow_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch):
    """A demo study's parent run as a cluster run left it: FAILED by the exit handler, two trials kept in the bucket."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("PROXYHPO_CHECKPOINT_ROOT", f"s3://{s3_bucket}/checkpoints")
    base = shipped_study("demo").with_data_root(f"s3://{s3_bucket}/datasets")
    study = base.model_copy(update={"name": f"cluster-resume-{s3_bucket[-12:]}"})
    run_id = tracking.start_parent_run(study.name, "hpo", config=study.model_dump(mode="json"), pipeline_run="kfp-run-1")
    client = tracking.client()
    client.set_tag(run_id, resume.CONFIG_HASH_TAG, resume.config_sha256(study))
    client.set_terminated(run_id, status="FAILED")
    for trial in ("r0-t000", "r0-t001"):
        storage.write_bytes(f"{resume.study_folder(run_id)}/trials/{trial}-0123456789abcdef.json", b"{}")
    return study, run_id


def test_the_parent_is_found_by_its_id_or_its_kfp_run_and_its_kept_trials_counted(stopped_cluster_run) -> None:
    study, run_id = stopped_cluster_run
    assert resolve_parent(study, "hpo", run_id) == (run_id, 2)
    assert resolve_parent(study, "hpo", "kfp-run-1") == (run_id, 2)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("unknown", "which is no run of study"),
        ("pipeline", "which is not a nas study's parent run"),
        ("config", "which was started with another config"),
        ("finished", "which finished"),
    ],
)
def test_a_run_that_cannot_be_continued_is_one_line(stopped_cluster_run, change: str, problem: str) -> None:
    study, run_id = stopped_cluster_run
    kind, reference = "hpo", run_id
    if change == "unknown":
        reference = "kfp-run-that-never-was"
    elif change == "pipeline":
        kind = "nas"
    elif change == "config":
        study = study.model_copy(update={"search": study.search.model_copy(update={"rounds": study.search.rounds + 1})})
    else:
        tracking.client().set_terminated(run_id, status="FINISHED")
    with pytest.raises(ConfigError) as caught:
        resolve_parent(study, kind, reference)
    message = str(caught.value)
    assert message.startswith("--resume: ") and problem in message and "\n" not in message


def test_the_new_runs_first_task_reopens_the_parent(stopped_cluster_run) -> None:
    study, run_id = stopped_cluster_run
    assert reopen_parent(study, run_id, pipeline_run="kfp-run-2") == run_id
    run = tracking.client().get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags[tracking.KFP_RUN_TAG] == "kfp-run-2"


def test_resume_without_a_cluster_is_refused(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxyhpo.cli import main

    assert main(["run", "examples/demo.yaml", "--resume", "0123abcd"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--resume: applies to cluster runs (--host)" in line
