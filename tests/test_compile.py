"""The one compile path (:mod:`proxyhpo.compile`): a registered study pipeline compiled for this process's images,
or for the images ``make push`` pushed (what ``make deploy`` uploads); an unknown kind refused with the choices.

What the compiled pipelines hold is checked under ``tests/pipelines/`` (``test_compile.py`` and the golden files).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxyhpo import __version__
from proxyhpo.catalogue import shipped_study
from proxyhpo.compile import PipelineImages, compile_study

RUNTIME_DIGEST, CPU_DIGEST = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _digests(folder: Path) -> Path:
    """The digest files as ``make push`` writes them: the whole reference, or the bare digest."""
    folder.mkdir()
    (folder / "runtime.digest").write_text(f"registry.example.org/ml/runtime@{RUNTIME_DIGEST}\n")
    (folder / "runtime-cpu.digest").write_text(CPU_DIGEST)
    return folder


def test_pushed_images_are_tagged_and_pinned_by_the_recorded_digests(tmp_path: Path) -> None:
    pushed = PipelineImages.pushed("registry.example.org/ml/", "0.1.0-abc1234", digests=_digests(tmp_path / "digests"))
    assert pushed == PipelineImages(
        runtime=f"registry.example.org/ml/runtime:0.1.0-abc1234@{RUNTIME_DIGEST}", cpu=f"registry.example.org/ml/runtime-cpu:0.1.0-abc1234@{CPU_DIGEST}"
    )
    assert PipelineImages.pushed("registry.example.org/ml", digests=tmp_path / "none-pushed") == PipelineImages(
        runtime=f"registry.example.org/ml/runtime:{__version__}", cpu=f"registry.example.org/ml/runtime-cpu:{__version__}"
    )


def test_a_digest_of_another_repository_is_refused_naming_its_file(tmp_path: Path) -> None:
    from proxyhpo.errors import ConfigError

    digests = _digests(tmp_path / "digests")
    (digests / "runtime-cpu.digest").write_text(f"other.example.org/runtime-cpu@{CPU_DIGEST}")
    with pytest.raises(ConfigError, match="runtime-cpu.digest"):
        PipelineImages.pushed("registry.example.org/ml", "0.1.0-abc1234", digests=digests)


def test_compiling_for_pushed_images_equals_compiling_under_their_variables(tmp_path: Path) -> None:
    """``make deploy`` compiles in its own process for the pushed images: the same YAML as a process whose
    ``PROXYHPO_IMAGE_*`` variables name them (how :mod:`proxyhpo.kfp.image` reads the images)."""
    study = shipped_study("demo-studies")
    pushed = PipelineImages.pushed("registry.example.org/ml", "0.1.0-abc1234", digests=_digests(tmp_path / "digests"))
    here = compile_study(study, tmp_path / "here.yaml", "trust", images=pushed).read_text()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PROXYHPO_")},
        "PROXYHPO_IMAGE_REGISTRY": "registry.example.org/ml",
        "PROXYHPO_IMAGE_TAG": "0.1.0-abc1234",
        "PROXYHPO_RUNTIME_IMAGE_DIGEST": RUNTIME_DIGEST,
        "PROXYHPO_CPU_IMAGE_DIGEST": CPU_DIGEST,
    }
    code = (
        "import sys; from proxyhpo.catalogue import shipped_study; from proxyhpo.compile import compile_study; "
        "compile_study(shipped_study('demo-studies'), sys.argv[1], 'trust')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there.yaml")], env=env, check=True, capture_output=True, text=True)
    assert here == (tmp_path / "there.yaml").read_text()
    spec = next(yaml.safe_load_all(here))
    assert {executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()} == {pushed.runtime, pushed.cpu}


def test_an_unknown_study_pipeline_is_refused_with_the_closest_and_every_choice(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        compile_study(shipped_study("demo"), tmp_path / "x.yaml", "hop")
    assert str(caught.value).startswith("unknown study pipeline 'hop'; did you mean 'hpo'? (choices: hpo, proxy-data-study,")
    assert not (tmp_path / "x.yaml").exists()
