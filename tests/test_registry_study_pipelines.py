"""The study-pipeline registry (:data:`proxyhpo.registry.STUDY_PIPELINES`): a new study kind is its own builder plus one
registration, and then the config accepts it, ``proxyhpo run --pipeline`` offers it and the one compile path
(:mod:`proxyhpo.compile`) compiles it; without the registration each of them refuses it.

The throwaway study pipeline is defined here: a tiny KFP pipeline of one lightweight component.
"""

# no `from __future__ import annotations`: KFP reads the component's annotations as types
from pathlib import Path

import pytest
import yaml
from kfp import dsl
from pydantic import ValidationError

from proxyhpo.catalogue import SHIPPED_PIPELINES
from proxyhpo.cli import build_parser, main
from proxyhpo.config import NetworkConfig, StudyCell, StudyConfig
from proxyhpo.registry import STUDY_PIPELINES, docstring_summary

KIND = "echo-study"


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def echo(text: str) -> str:
    return text


def build_echo_pipeline(study: StudyConfig):
    """Echo the study's name: the smallest study pipeline there is."""

    @dsl.pipeline(name="proxyhpo-echo-study", description=f"echo for {study.name}")
    def echo_study(study_name: str = study.name):
        echo(text=study_name)

    return echo_study


@pytest.fixture
def registered():
    """The throwaway study pipeline, registered for one test (its builder itself: this module has no stable import path)."""
    with STUDY_PIPELINES.temporary(KIND, build_echo_pipeline, docstring_summary(build_echo_pipeline)):
        yield KIND


def _cell(study: str) -> StudyCell:
    return StudyCell(study=study, arm="full", repeat=0, network=NetworkConfig.full(), train_ids=("a",), val_ids=("b",), data_fraction=0.5)


def _study_yaml(folder: Path) -> Path:
    path = folder / "mine.yaml"
    path.write_text("name: mine\ndata: {dataset: s3://team/datasets/Task09_Spleen}\n")
    return path


def test_every_shipped_kind_is_registered_and_described_by_its_builder() -> None:
    assert STUDY_PIPELINES.names() == ("hpo", "proxy-data-study", "proxy-net-study", "trust", "automl-comparison", "nas")
    for entry in STUDY_PIPELINES.entries():
        assert entry.description == docstring_summary(STUDY_PIPELINES[entry.name]), entry.name
    assert {entry.kind for entry in SHIPPED_PIPELINES.values()} == set(STUDY_PIPELINES)


def test_the_config_accepts_a_registered_study_kind_only(registered: str) -> None:
    assert _cell(registered).study == registered
    with STUDY_PIPELINES.temporary("other-study", build_echo_pipeline, "another"):
        assert _cell("other-study").study == "other-study"
    with pytest.raises(ValidationError) as caught:
        _cell("echo-stduy")
    assert "unknown study pipeline 'echo-stduy'; did you mean 'echo-study'?" in str(caught.value)


def test_the_config_refuses_an_unregistered_study_kind() -> None:
    assert KIND not in STUDY_PIPELINES
    with pytest.raises(ValidationError, match="unknown study pipeline 'echo-study'"):
        _cell(KIND)


def test_the_cli_offers_a_registered_study_kind(registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["run", "study.yaml", "--pipeline", registered])
    assert args.pipeline == registered
    assert build_parser().parse_args(["compile", "--pipeline", registered]).pipeline == registered
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["run", "study.yaml", "--pipeline", "no-such-study"])
    assert caught.value.code == 2 and "invalid choice: 'no-such-study'" in capsys.readouterr().err


def test_the_cli_refuses_an_unregistered_study_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "study.yaml", "--pipeline", KIND])
    assert f"invalid choice: '{KIND}'" in capsys.readouterr().err


def test_the_one_compile_path_compiles_a_registered_study_kind(registered: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(_study_yaml(tmp_path)), "--pipeline", registered, "--out", str(out)]) == 0
    compiled = out / f"{registered}-mine.yaml"
    assert capsys.readouterr().out.split() == [str(compiled)]
    spec = next(yaml.safe_load_all(compiled.read_text()))
    assert spec["pipelineInfo"]["name"] == "proxyhpo-echo-study"
    assert spec["root"]["inputDefinitions"]["parameters"]["study_name"]["defaultValue"] == "mine"
    assert [executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()] == ["python:3.11-slim"]

