"""The package as a user installs it: a wheel in a fresh virtual environment compiles every pipeline.

Nothing may depend on the source tree: the example studies ship as package data and the pipelines (the
``pipelines`` package, named by :data:`proxyhpo.registry.STUDY_PIPELINES`) are installed beside ``proxyhpo``. The fresh environment borrows the dependencies
(kfp, pydantic, ...) of the development one through a ``.pth`` file, which adds their folder to
``sys.path`` without running that folder's own ``.pth`` files, so the editable install stays invisible.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel built from a copy of the sources; returns its python."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("components", "pipelines"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(source)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = dist.glob("proxyhpo-*.whl")
    env = root / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_the_wheel_ships_examples_and_pipelines(installed: Path, tmp_path: Path) -> None:
    probe = "import proxyhpo, pipelines; print(proxyhpo.__file__); print(pipelines.__file__)"
    # -P: the current folder is not put on sys.path; run from an empty folder all the same
    paths = subprocess.run([str(installed), "-P", "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(installed.parent.parent) in path for path in paths), paths


def test_compile_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "compiled"
    done = subprocess.run([str(installed), "-P", "-m", "proxyhpo", "compile", "--out", str(out)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    from proxyhpo.catalogue import SHIPPED_PIPELINES

    compiled = sorted(path.name for path in out.glob("*.yaml"))
    assert compiled == sorted(f"{name}.yaml" for name in SHIPPED_PIPELINES)
    assert {"hpo-demo.yaml", "proxy-data-study-spleen.yaml", "trust-prostate.yaml", "automl-comparison-demo-studies.yaml"} <= set(compiled)
    spec = next(yaml.safe_load_all((out / "hpo-demo.yaml").read_text()))
    assert spec["pipelineInfo"]["name"] == "proxyhpo-hpo"
