"""Compile every pipeline to YAML (``proxyhpo compile``), and regenerate the golden files (``make golden``).

Each pipeline is compiled for the example study it ships with; a cluster user compiles their own study
with ``proxyhpo compile`` after editing the example, or runs it straight with ``proxyhpo run --host``.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from kfp import compiler

from pipelines.hpo import build_hpo_pipeline
from proxyhpo.config import StudyConfig, load_study
from proxyhpo.storage import atomic_output

__all__ = ["EXAMPLES", "compile_study", "compile_all", "normalise"]

REPO = Path(__file__).resolve().parent.parent
#: pipeline file name -> the example study it is compiled for
EXAMPLES = {"hpo-demo": "examples/demo.yaml", "hpo-spleen": "examples/spleen.yaml", "hpo-prostate": "examples/prostate.yaml"}


def compile_study(study: StudyConfig, out: str | os.PathLike[str]) -> Path:
    """Compile the HPO pipeline of ``study`` to ``out`` (atomically)."""
    with atomic_output(out) as tmp:
        yaml_path = tmp.with_suffix(".yaml")
        compiler.Compiler().compile(build_hpo_pipeline(study), str(yaml_path))
        os.replace(yaml_path, tmp)
    return Path(out)


def compile_all(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Compile every example study's pipeline into ``out_dir``."""
    return [compile_study(load_study(REPO / example), Path(out_dir) / f"{name}.yaml") for name, example in EXAMPLES.items()]


def normalise(text: str) -> str:
    """Strip what changes with the SDK release rather than with the pipeline (the golden files' comparison)."""
    return re.sub(r"sdkVersion: kfp-[\w.]+", "sdkVersion: kfp-<version>", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--golden", type=Path, required=True, help="folder of the golden files to regenerate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in compile_all(tmp):
            golden = args.golden / path.name
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(normalise(path.read_text()))
            print(golden)


if __name__ == "__main__":
    main()
