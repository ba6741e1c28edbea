"""Uploading the shipped pipelines: a new version on every deploy, data fields defaulting to the chart's MinIO.

No Kubeflow Pipelines server runs here: a stand-in records what ``kfp.Client`` would have been asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxyhpo.launch import SHIPPED_PIPELINES, compile_pipelines, upload_compiled


class RecordingClient:
    """The three ``kfp.Client`` calls an upload makes, against an in-memory pipeline registry."""

    def __init__(self) -> None:
        self.pipelines: dict[str, str] = {}
        self.uploads: list[tuple[str, str, dict]] = []

    def get_pipeline_id(self, name: str) -> str | None:
        return self.pipelines.get(name)

    def upload_pipeline(self, path: str, pipeline_name: str, description: str) -> None:
        self.pipelines[pipeline_name] = f"id-{len(self.pipelines)}"
        self.uploads.append(("pipeline", pipeline_name, next(yaml.safe_load_all(Path(path).read_text()))))

    def upload_pipeline_version(self, path: str, pipeline_version_name: str, pipeline_id: str) -> None:
        self.uploads.append(("version", pipeline_version_name, next(yaml.safe_load_all(Path(path).read_text()))))


@pytest.fixture(scope="module")
def for_cluster(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every shipped pipeline compiled as `proxyhpo upload --data-root` and the deploy compile them."""
    return compile_pipelines(tmp_path_factory.mktemp("cluster"), data_root="s3://proxyhpo/datasets")


def test_every_pipeline_uploads_then_versions_with_data_on_minio(for_cluster: list[Path]) -> None:
    client = RecordingClient()
    names = upload_compiled(client, for_cluster, version="0.1.0-abc1234")
    assert names == [f"proxyhpo-{name}" for name in SHIPPED_PIPELINES]
    assert [kind for kind, _, _ in client.uploads] == ["pipeline"] * len(SHIPPED_PIPELINES)
    demo = next(spec for _, name, spec in client.uploads if name == "proxyhpo-hpo-demo")
    parameters = demo["root"]["inputDefinitions"]["parameters"]
    assert parameters["dataset"]["defaultValue"] == "s3://proxyhpo/datasets/demo-spleen"
    assert parameters["external"]["defaultValue"] == "s3://proxyhpo/datasets/demo-spleen-external"
    assert parameters["study_name"]["defaultValue"] == "demo-spleen"
    assert '"synthetic":null' in parameters["study_config"]["defaultValue"]  # phantoms are pushed, not generated on a pod

    upload_compiled(client, for_cluster, version="0.1.0-abc1234")  # a second deploy
    versions = [name for kind, name, _ in client.uploads if kind == "version"]
    assert len(versions) == len(SHIPPED_PIPELINES) and all(name.startswith("proxyhpo-") and "-0.1.0-abc1234-" in name for name in versions)


def test_compiled_for_a_cluster_leaves_the_pipeline_root_to_the_namespace(for_cluster: list[Path]) -> None:
    for path in for_cluster:
        spec = next(yaml.safe_load_all(path.read_text()))
        # no root compiled in: the run namespace's kfp-launcher ConfigMap (the chart's bucket) decides
        assert "defaultPipelineRoot" not in spec, path.name
        dataset = spec["root"]["inputDefinitions"]["parameters"]["dataset"]["defaultValue"]
        assert dataset.startswith("s3://proxyhpo/datasets/"), (path.name, dataset)


def test_compile_command_takes_the_data_root(tmp_path: Path) -> None:
    from proxyhpo.cli import main

    study = tmp_path / "study.yaml"
    study.write_text("name: mine\ndata: {dataset: /data/Task09_Spleen, external: /data/BTCV}\n")
    assert main(["compile", str(study), "--data-root", "s3://team/datasets", "--out", str(tmp_path / "out")]) == 0
    spec = next(yaml.safe_load_all((tmp_path / "out" / "hpo-mine.yaml").read_text()))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert (parameters["dataset"]["defaultValue"], parameters["external"]["defaultValue"]) == ("s3://team/datasets/Task09_Spleen", "s3://team/datasets/BTCV")
