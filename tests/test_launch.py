"""Launching a study's pipeline (:mod:`proxyhpo.launch`) on a cluster: the YAML the one compile path writes is what
is submitted, with the run's parameters, into the study's experiment, authenticated from the environment.

Local runs, which run the same compiled YAML, are exercised end to end under ``tests/pipelines/``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from proxyhpo.catalogue import shipped_study
from proxyhpo.errors import ConfigError
from proxyhpo.launch import run_study, submit


def test_submit_sends_the_compiled_pipeline_with_the_run_parameters(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import kfp

    calls: list[tuple[str, Any]] = []

    class Client:
        def __init__(self, **arguments: Any) -> None:
            calls.append(("client", arguments))

        def create_run_from_pipeline_package(self, pipeline_file: str, **options: Any) -> SimpleNamespace:
            spec, platform = yaml.safe_load_all(Path(pipeline_file).read_text())
            calls.append(("run", (spec, platform, options)))
            return SimpleNamespace(run_id="run-7")

    monkeypatch.setattr(kfp, "Client", Client)
    monkeypatch.setenv("KFP_TOKEN", "tok-3d")
    monkeypatch.delenv("KFP_COOKIES", raising=False)
    study = shipped_study("demo-studies").with_data_root("s3://team/datasets")
    assert submit(study, "https://kfp.example.org", namespace="team-a", kind="trust") == "run-7"
    (_, arguments), (_, (spec, platform, options)) = calls
    assert arguments == {"host": "https://kfp.example.org", "namespace": "team-a", "existing_token": "tok-3d"}
    assert spec["pipelineInfo"]["name"] == "proxyhpo-trust" and "kubernetes" in platform["platforms"]
    executors = spec["deploymentSpec"]["executors"]
    assert len({yaml.safe_dump(e) for e in executors.values()}) == len(executors), "identical executors are merged, as in every compiled pipeline"
    assert options["experiment_name"] == study.name and options["run_name"].startswith(f"{study.name}-trust-")
    assert options["arguments"] == {"study_config": study.model_dump_json(), **study.run_parameters()}
    assert "submitted run run-7 to https://kfp.example.org" in capsys.readouterr().out


def test_an_unknown_pipeline_is_refused_before_the_config_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        run_study(tmp_path / "missing.yaml", kind="hpx")
    assert str(caught.value).startswith("--pipeline: is 'hpx', not a pipeline proxyhpo has")
    assert "hpo, proxy-data-study, proxy-net-study, trust, automl-comparison, nas" in str(caught.value)
