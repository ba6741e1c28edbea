"""The one publish path every report goes through, and the study kinds' report modules as the registry names them."""

from __future__ import annotations

import base64
import importlib
import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from proxyhpo import tracking
from proxyhpo.analysis.page import html_page
from proxyhpo.analysis.publish import Rendered, publish, save
from proxyhpo.analysis.study_report import REPORTS, report_kinds
from proxyhpo.registry import STUDY_PIPELINES
from proxyhpo.tracking import names

#: Every study kind's report module (those in REPORTS are built from MLflow alone, the other two by their pipelines' steps).
MODULES = {kind: module.__name__ for kind, module in REPORTS.items()} | {"hpo": "proxyhpo.analysis.report", "nas": "proxyhpo.analysis.nas_report"}


def _rendered(kind: str = "hpo") -> Rendered:
    figure = Figure()
    figure.subplots().plot([1, 2], [3, 4])
    return Rendered(
        kind=kind, title="Study <s>", markdown="# Study `s`\n\n| a | b |\n", metrics={names.N_TRIALS: 3.0, "x.arm": 0.5},
        figures={"search": figure}, summary={"n_trials": 3}, documents={"extra.json": {"a": [1, 2]}},
    )


def test_every_registered_study_kind_has_one_report_module_with_collect_and_render() -> None:
    assert set(MODULES) == set(STUDY_PIPELINES.names())
    for kind, name in MODULES.items():
        module = importlib.import_module(name)
        assert module.KIND == kind and callable(module.collect) and callable(module.render), name
    assert report_kinds() == tuple(kind for kind in STUDY_PIPELINES.names() if kind in REPORTS)


def test_save_writes_the_markdown_and_one_png_per_figure(tmp_path: Path) -> None:
    plots = save(_rendered(), tmp_path / "out")
    assert plots == {"search": tmp_path / "out" / "search.png"}
    assert (tmp_path / "out" / names.REPORT_ARTIFACT).read_text() == "# Study `s`\n\n| a | b |\n"
    assert plots["search"].stat().st_size > 0 and [p.name for p in (tmp_path / "out").iterdir()] != []
    assert not list((tmp_path / "out").glob("*.partial"))


def test_publish_logs_on_the_parent_closes_it_and_writes_the_pages(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.start_parent_run("publish", "hpo", config={}, tracking_uri=uri)
    called = []
    markdown, html = tmp_path / "kfp" / "report.md", tmp_path / "kfp" / "report.html"
    publish(_rendered(), parent, markdown=markdown, html=html, tracking_uri=uri, before_finish=lambda client: called.append(client.get_run(parent).info.status))
    client = tracking.client(uri)
    run = client.get_run(parent)
    assert called == ["RUNNING"] and run.info.status == "FINISHED"  # before_finish runs while the run is still open
    assert run.data.metrics == {names.N_TRIALS: 3.0, "x.arm": 0.5}
    assert {a.path for a in client.list_artifacts(parent)} >= {names.REPORT_ARTIFACT, "search.png", names.SUMMARY_ARTIFACT, "extra.json"}
    extra = json.loads(Path(client.download_artifacts(parent, "extra.json", str(tmp_path / "dl"))).read_text())
    assert extra == {"a": [1, 2]}
    assert markdown.read_text() == "# Study `s`\n\n| a | b |\n"
    page = html.read_text()
    assert page.startswith("<html><head><meta charset='utf-8'><title>Study &lt;s&gt;</title>")
    assert "<figcaption>search.png</figcaption>" in page and "<pre># Study `s`" in page
    assert not list(tmp_path.rglob("*.partial"))


def test_the_html_page_inlines_each_image_in_order_and_escapes_the_markdown() -> None:
    page = html_page("t", "<b>&", {"b": b"\x01", "a": b"\x02"})
    assert page.index("alt='b'") < page.index("alt='a'")
    encoded = base64.b64encode(b"\x01").decode()
    assert f"src='data:image/png;base64,{encoded}'" in page
    assert "<pre>&lt;b&gt;&amp;</pre>" in page


def test_a_kind_without_a_report_built_from_mlflow_is_refused(tmp_path: Path) -> None:
    from proxyhpo.analysis.study_report import build_study_report
    from proxyhpo.errors import ProxyHPOError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.start_parent_run("nas-study", "nas", config={}, tracking_uri=uri)
    with pytest.raises(ProxyHPOError, match=r"is a nas run, not one of the comparison studies this report covers \(proxy-data-study, proxy-net-study, trust, automl-comparison\)$"):
        build_study_report(parent, tmp_path / "out", tracking_uri=uri)
