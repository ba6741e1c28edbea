"""Uploading the shipped pipelines: a new version on every deploy, data fields defaulting to the chart's MinIO.

No Kubeflow Pipelines server runs here: a stand-in records what ``kfp.Client`` would have been asked.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from proxyhpo.launch import SHIPPED_PIPELINES, upload_all


class RecordingClient:
    """The three ``kfp.Client`` calls ``upload_all`` makes, against an in-memory pipeline registry."""

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


def test_every_pipeline_uploads_then_versions_with_data_on_minio() -> None:
    client = RecordingClient()
    names = upload_all("http://kfp.invalid", data_root="s3://proxyhpo/datasets", client=client)
    assert names == [f"proxyhpo-{name}" for name in SHIPPED_PIPELINES]
    assert [kind for kind, _, _ in client.uploads] == ["pipeline"] * len(SHIPPED_PIPELINES)
    demo = next(spec for _, name, spec in client.uploads if name == "proxyhpo-hpo-demo")
    parameters = demo["root"]["inputDefinitions"]["parameters"]
    assert parameters["dataset"]["defaultValue"] == "s3://proxyhpo/datasets/demo-spleen"
    assert parameters["external"]["defaultValue"] == "s3://proxyhpo/datasets/demo-spleen-external"
    assert parameters["study_name"]["defaultValue"] == "demo-spleen"
    assert '"synthetic":null' in parameters["study_config"]["defaultValue"]  # phantoms are pushed, not generated on a pod

    upload_all("http://kfp.invalid", data_root="s3://proxyhpo/datasets", client=client)  # a second deploy
    versions = [name for kind, name, _ in client.uploads if kind == "version"]
    assert len(versions) == len(SHIPPED_PIPELINES) and all(name.startswith("proxyhpo-") for name in versions)


def test_compile_for_a_cluster_leaves_the_pipeline_root_to_the_namespace(tmp_path: Path, capsys) -> None:
    from proxyhpo.cli import main

    assert main(["compile", "--data-root", "s3://proxyhpo/datasets", "--out", str(tmp_path)]) == 0
    for path in tmp_path.glob("*.yaml"):
        spec = next(yaml.safe_load_all(path.read_text()))
        # no root compiled in: the run namespace's kfp-launcher ConfigMap (the chart's bucket) decides
        assert "defaultPipelineRoot" not in spec, path.name
        dataset = spec["root"]["inputDefinitions"]["parameters"]["dataset"]["defaultValue"]
        assert dataset.startswith("s3://proxyhpo/datasets/"), (path.name, dataset)
