"""No credential from the environment reaches an output (issue 11).

Known fake secrets (``FAKE_SECRETS`` in tests/conftest.py: every variable proxyhpo, MLflow or the KFP client reads
a credential from) are planted in the environment of

- the session's tiny HPO study, run end to end by kfp.local (``tiny_hpo_run``): its MLflow store (the SQLite
  database and the artifact folders), the KFP local pipeline root, the compiled pipeline it ran, the kept
  trial results and checkpoints, the task logs and everything it printed;
- the compilation of every shipped pipeline;
- the chart rendered with Helm's engine, given the credentials the way `make deploy` gives them, where they
  may appear in the chart's Secrets and nowhere else.

Every value is searched for as it is, base64-encoded (Kubernetes Secrets) and URL-quoted, inside zip members
(controller states, torch files) and gzip files too; each search asserts it read enough to mean something.
"""

from __future__ import annotations

import base64
import gzip
import io
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _forms(value: str) -> list[bytes]:
    """The ways a value can be written: as it is, base64 (a Secret's data), URL-quoted; a cookie's value alone too."""
    values = {value, value.split("=", 1)[-1]}
    forms = set()
    for text in values:
        forms |= {text.encode(), base64.b64encode(text.encode()), quote(text, safe="").encode()}
    return sorted(forms)


class Scan:
    """Searches bytes for the planted secrets and counts what it read."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.needles = {name: _forms(value) for name, value in secrets.items()}
        self.files = 0
        self.bytes = 0
        self.seen: list[str] = []
        self.hits: list[tuple[str, str]] = []

    def data(self, where: str, data: bytes) -> None:
        self.bytes += len(data)
        self.seen.append(where)
        for name, forms in self.needles.items():
            if any(form in data for form in forms):
                self.hits.append((name, where))

    def file(self, path: Path) -> None:
        raw = path.read_bytes()
        self.files += 1
        self.data(str(path), raw)
        if zipfile.is_zipfile(io.BytesIO(raw)):  # controller states, torch checkpoints and models
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                for member in archive.namelist():
                    self.data(f"{path}!{member}", archive.read(member))
        elif raw[:2] == b"\x1f\x8b":
            self.data(f"{path}!gunzip", gzip.decompress(raw))

    def tree(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.file(path)


def test_the_scan_finds_a_planted_secret(tmp_path: Path, fake_secrets: dict[str, str]) -> None:
    """The search can fail: a secret as it is, base64-encoded, inside a zip member and inside a gzip file is found."""
    value = fake_secrets["AWS_SECRET_ACCESS_KEY"]
    (tmp_path / "plain.log").write_text(f"key={value}\n")
    (tmp_path / "secret.yaml").write_text(f"data:\n  key: {base64.b64encode(value.encode()).decode()}\n")
    with zipfile.ZipFile(tmp_path / "state.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("controller.json", f'{{"token": "{fake_secrets["KFP_TOKEN"]}"}}')
    (tmp_path / "cookie.gz").write_bytes(gzip.compress(fake_secrets["KFP_COOKIES"].split("=", 1)[1].encode()))
    scan = Scan(fake_secrets)
    scan.tree(tmp_path)
    assert sorted(scan.hits) == [
        ("AWS_SECRET_ACCESS_KEY", str(tmp_path / "plain.log")),
        ("AWS_SECRET_ACCESS_KEY", str(tmp_path / "secret.yaml")),
        ("KFP_COOKIES", f"{tmp_path / 'cookie.gz'}!gunzip"),
        ("KFP_TOKEN", f"{tmp_path / 'state.zip'}!controller.json"),
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_hpo_run")  # one worker runs the session's tiny study for all three
def test_a_study_run_leaves_no_secret_behind(tiny_hpo_run, fake_secrets: dict[str, str]) -> None:
    scan = Scan(fake_secrets)
    scan.tree(tiny_hpo_run.home)
    scan.data("the launcher's output", tiny_hpo_run.console.encode())
    assert not scan.hits, scan.hits
    # it read the whole run: the store, MLflow's artifacts, the pipeline root, what it ran, what it kept, what it printed
    home = tiny_hpo_run.home
    for must in (home / "mlflow.db", home / "mlartifacts", home / "artifacts", home / "pipelines" / "hpo-tiny-local.yaml", home / "checkpoints"):
        assert any(seen == str(must) or seen.startswith(f"{must}/") for seen in scan.seen), must
    # the search strategy's states: a REINFORCE archive's members, or the default TPE's Optuna journal (a text file)
    assert any(seen.endswith("!controller.json") or ("/controller-" in seen and seen.endswith("/state")) for seen in scan.seen)
    assert scan.files >= 50 and scan.bytes >= 2_000_000, (scan.files, scan.bytes)
    assert len(tiny_hpo_run.console) > 10_000  # the tasks' own output included


@pytest.mark.slow
@pytest.mark.xdist_group("compiled")  # the session's shipped pipelines, compiled once on one worker
def test_compiled_pipelines_hold_no_secret(shipped_pipelines, fake_secrets: dict[str, str]) -> None:
    from proxyhpo.catalogue import SHIPPED_PIPELINES

    compiled = shipped_pipelines("s3://proxyhpo/datasets")  # compiled with the fake credentials in the environment
    assert sorted(path.stem for path in compiled) == sorted(SHIPPED_PIPELINES)
    scan = Scan(fake_secrets)
    scan.tree(compiled[0].parent)
    assert not scan.hits, scan.hits
    assert scan.files == len(SHIPPED_PIPELINES) and scan.bytes >= 500_000, (scan.files, scan.bytes)
    # the credentials reach the pods by reference to the chart's Secret, never by value
    assert all("proxyhpo-s3" in path.read_text() for path in compiled)


def test_the_rendered_chart_holds_credentials_only_in_its_secrets(monkeypatch: pytest.MonkeyPatch, fake_secrets: dict[str, str]) -> None:
    import helm_python as helm

    from proxyhpo import deploy

    for key, value in fake_secrets.items():
        monkeypatch.setenv(key, value)
    values = deploy.credential_values(fake_secrets)  # what `make deploy` hands helm on stdin
    assert values, "no credential reached the chart: the test would prove nothing"
    with helm.Chart.load(REPO / "helm" / "proxyhpo") as chart:
        manifests = chart.render(values, name="proxyhpo", namespace="ml-team", is_install=True)
    outside, inside = Scan(fake_secrets), Scan(fake_secrets)
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            outside.data(path, text.encode())
            continue
        for document in yaml.safe_load_all(text):
            if not document:
                continue
            where = f"{path}: {document['kind']}/{document['metadata']['name']}"
            if document["kind"] == "Secret":
                credentials = {key: document.get(key) for key in ("data", "stringData")}
                inside.data(where, yaml.safe_dump(credentials).encode())
                document = {key: value for key, value in document.items() if key not in credentials}
            outside.data(where, yaml.safe_dump(document).encode())
    assert not outside.hits, outside.hits
    assert outside.bytes >= 20_000 and len(outside.seen) >= 15, (outside.bytes, len(outside.seen))
    given = {"S3_ACCESS_KEY", "S3_SECRET_KEY", "POSTGRES_PASSWORD"}
    assert {name for name, _ in inside.hits} == given  # they are in the Secrets: the search does see them
