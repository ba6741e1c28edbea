"""The one upload path (:mod:`proxyhpo.upload`): a new version on every deploy, data fields defaulting to the chart's
MinIO, the client authenticated from the environment, a refusal in one line.

No Kubeflow Pipelines server runs here: a stand-in records what ``kfp.Client`` would have been asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxyhpo.catalogue import SHIPPED_PIPELINES
from proxyhpo.upload import publish, upload_compiled, upload_shipped

pytestmark = pytest.mark.xdist_group("compiled")  # the session's shipped pipelines, compiled once on one worker


class RecordingClient:
    """The ``kfp.Client`` calls an upload makes, against an in-memory pipeline registry."""

    def __init__(self, **arguments: object) -> None:
        self.arguments = arguments
        self.pipelines: dict[tuple[str | None, str], str] = {}  # (namespace or None: shared, name) -> id
        self.uploads: list[tuple[str, str, dict]] = []
        self.upload_namespaces: list[str | None] = []
        self.experiments: list[tuple[str, str | None]] = []

    def get_pipeline_id(self, name: str) -> str | None:  # the shared pipelines only, as KFP's client asks
        return self.pipelines.get((None, name))

    def list_pipelines(self, filter: str, namespace: str | None = None):  # noqa: A002 - kfp.Client's name
        import json
        from types import SimpleNamespace

        (predicate,) = json.loads(filter)["predicates"]
        found = self.pipelines.get((namespace, predicate["stringValue"]))
        return SimpleNamespace(pipelines=[SimpleNamespace(pipeline_id=found)] if found else None)

    def upload_pipeline(self, path: str, pipeline_name: str, description: str, namespace: str | None = None) -> None:
        self.pipelines[(namespace, pipeline_name)] = f"id-{len(self.pipelines)}"
        self.upload_namespaces.append(namespace)
        self.uploads.append(("pipeline", pipeline_name, next(yaml.safe_load_all(Path(path).read_text()))))

    def upload_pipeline_version(self, path: str, pipeline_version_name: str, pipeline_id: str) -> None:
        self.uploads.append(("version", pipeline_version_name, next(yaml.safe_load_all(Path(path).read_text()))))

    def create_experiment(self, name: str, namespace: str | None = None) -> None:
        self.experiments.append((name, namespace))


@pytest.fixture(scope="module")
def for_cluster(shipped_pipelines) -> list[Path]:
    """Every shipped pipeline compiled as `proxyhpo upload --data-root` and the deploy compile them."""
    return shipped_pipelines("s3://proxyhpo/datasets")


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


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[RecordingClient]:
    """Every ``kfp.Client`` the code under test makes, as a :class:`RecordingClient`."""
    import kfp

    made: list[RecordingClient] = []

    def client(**arguments: object) -> RecordingClient:
        made.append(RecordingClient(**arguments))
        return made[-1]

    monkeypatch.setattr(kfp, "Client", client)
    return made


def test_publish_authenticates_uploads_and_creates_the_experiments(for_cluster: list[Path], clients: list[RecordingClient]) -> None:
    env = {"KFP_TOKEN": "tok-9c2e\n", "KFP_COOKIES": ""}
    names = publish("http://kfp.example.org", for_cluster[:2], namespace="team-a", version="0.1.0", experiments=["demo-spleen"], multi_user=True, env=env)
    (client,) = clients
    assert client.arguments == {"host": "http://kfp.example.org", "namespace": "team-a", "existing_token": "tok-9c2e"}
    assert names == [f"proxyhpo-{path.stem}" for path in for_cluster[:2]] == [name for _, name, _ in client.uploads]
    assert client.upload_namespaces == ["team-a", "team-a"]  # the profile's own pipelines, not shared ones
    assert client.experiments == [("demo-spleen", "team-a")]
    upload_compiled(client, for_cluster[:2], version="0.1.0", namespace="team-a")  # a second deploy finds them there
    assert [kind for kind, _, _ in client.uploads] == ["pipeline", "pipeline", "version", "version"]


def test_single_user_pipelines_stay_shared(for_cluster: list[Path], clients: list[RecordingClient]) -> None:
    publish("http://kfp.example.org", for_cluster[:1], namespace="kubeflow", version="0.1.0", env={})
    assert clients[0].upload_namespaces == [None]


def test_a_refused_upload_is_one_line_naming_the_host(for_cluster: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import kfp
    from kfp_server_api.exceptions import ApiException

    from proxyhpo.errors import ProxyHPOError

    class Refusing(RecordingClient):
        def get_pipeline_id(self, name: str) -> str | None:
            raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(kfp, "Client", Refusing)
    with pytest.raises(ProxyHPOError) as caught:
        publish("http://kfp.example.org", for_cluster[:1], namespace="team-a", version="0.1.0", env={})
    message = str(caught.value)
    assert message.startswith("uploading to KFP at http://kfp.example.org failed (403 Forbidden)") and "\n" not in message
    assert "proxyhpo deploy --preflight --host http://kfp.example.org --namespace team-a" in message


def test_upload_command_compiles_every_shipped_pipeline_and_publishes_it(clients: list[RecordingClient], monkeypatch: pytest.MonkeyPatch) -> None:
    import proxyhpo.catalogue

    # the real compile path, over a catalogue of one (compiling all twenty is the session fixture's job)
    monkeypatch.setattr(proxyhpo.catalogue, "SHIPPED_PIPELINES", {"hpo-demo": SHIPPED_PIPELINES["hpo-demo"]})
    monkeypatch.setenv("KFP_COOKIES", "authservice_session=c00k1e")
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    assert upload_shipped("http://kfp.example.org", namespace="team-b", data_root="s3://team/datasets") == ["proxyhpo-hpo-demo"]
    (client,) = clients
    assert client.arguments == {"host": "http://kfp.example.org", "namespace": "team-b", "cookies": "authservice_session=c00k1e"}
    ((kind, name, spec),) = client.uploads
    assert name == "proxyhpo-hpo-demo"
    assert spec["root"]["inputDefinitions"]["parameters"]["dataset"]["defaultValue"].startswith("s3://team/datasets/")


def test_a_host_that_never_answers_costs_the_deadline_then_one_line(for_cluster: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real kfp.Client against a server that accepts the connection and says nothing: without a deadline it waits for ever."""
    import socket
    import threading
    import time

    from proxyhpo.errors import ProxyHPOError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])  # held open, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("PROXYHPO_KFP_READ_TIMEOUT", "0.5")
    host = f"http://127.0.0.1:{server.getsockname()[1]}"
    started = time.monotonic()
    try:
        with pytest.raises(ProxyHPOError) as caught:
            publish(host, for_cluster[:1], namespace="team-a", version="0.1.0", env={})
    finally:
        stop.set()
        thread.join()
        for connection in (*accepted, server):
            connection.close()
    assert time.monotonic() - started < 15  # urllib3's retries of the read, each within the deadline
    message = str(caught.value)
    assert message.startswith(f"uploading to KFP at {host} failed") and "timed out" in message.lower() and "\n" not in message, message


def test_a_bad_kfp_timeout_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyhpo.errors import ConfigError
    from proxyhpo.kfp_auth import client

    monkeypatch.setenv("PROXYHPO_KFP_CONNECT_TIMEOUT", "0")
    with pytest.raises(ConfigError, match=r"PROXYHPO_KFP_CONNECT_TIMEOUT: is '0', not a number of seconds above 0"):
        client("http://kfp.example.org")
