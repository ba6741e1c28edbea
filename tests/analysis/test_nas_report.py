"""The NAS report: its record from the folds' results, its Markdown and the controller's figure, published on the parent run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxyhpo import tracking
from proxyhpo.analysis import nas_report
from proxyhpo.config import DataConfig, NasSearchSpace, NasSpaceConfig, StudyConfig
from proxyhpo.config.nas import NasFold, NasFoldResult, NasPlan
from proxyhpo.config.nas_controller import EpisodeStats
from proxyhpo.networks.nas_encoding import largest
from proxyhpo.tracking import names


def _episode(episode: int, rewards: tuple[float | None, ...], entropy: float, same: float) -> EpisodeStats:
    done = [r for r in rewards if r is not None]
    return EpisodeStats(
        episode=episode, samples=((0,),) * len(rewards), rewards=rewards, n_failed=len(rewards) - len(done), stepped=True,
        mean_reward=sum(done) / len(done) if done else None, max_reward=max(done) if done else None, entropy=entropy,
        most_likely=(0,), same_as_most_likely=same, mode_fraction=1.0,
    )


@pytest.fixture(scope="module")
def nas(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, NasPlan, list[Path]]:
    root = tmp_path_factory.mktemp("nas")
    study = StudyConfig.model_validate({"name": "nas-report", "data": DataConfig(dataset="/data/heart").model_dump(), "nas": {"children_per_episode": 2}})
    space = NasSearchSpace.from_shapes(NasSpaceConfig(), [(32, 64, 64)] * 3, in_channels=1)
    folds = (
        NasFold(fold=0, search_train_ids=("c", "d", "e"), search_validation_ids=("f",), test_ids=("a", "b"), proxy_ids=("c", "d")),
        NasFold(fold=1, search_train_ids=("a", "b", "f"), search_validation_ids=("e",), test_ids=("c", "d"), proxy_ids=("a", "b")),
    )
    plan = NasPlan(space=space, folds=folds, internal_test_ids=("x", "y", "z"), proxy_method="mi")
    architecture = largest(space)
    episodes = (_episode(0, (0.2, None), 1.5, 0.5), _episode(1, (0.4, 0.5), 1.0, 1.0))
    results = [
        NasFoldResult(
            fold=fold, arm=arm, architecture=architecture, test_dice=dice, search_validation_dice=dice + 0.1, internal_test_dice=dice - 0.05,
            search_gpu_hours=hours, train_cases=cases, search_validation_cases=1, test_cases=2, episodes=episodes, failed_children=failed,
        )
        for arm, fold, dice, hours, cases, failed in (("all", 0, 0.8, 2.0, 3, 1), ("all", 1, 0.7, 2.0, 3, 0), ("proxy", 0, 0.7, 0.5, 2, 0), ("proxy", 1, 0.6, 0.5, 2, 0))
    ]
    files = []
    for result in results:
        files.append(root / f"{result.arm}-{result.fold}.json")
        files[-1].write_text(result.model_dump_json())
    return study, plan, files


def test_the_record_holds_the_folds_numbers(nas: tuple[StudyConfig, NasPlan, list[Path]]) -> None:
    study, plan, files = nas
    record = nas_report.collect(study, plan, files)
    assert isinstance(record, nas_report.NasRecord) and len(record.results) == 4
    # 2 episodes of 2 children per fold; one child without a reward per fold, and one child of all/0 that the search
    # counted as failed (rewarded 0); none stopped: the NAS search stops no child early
    assert (record.n_trials, record.n_failed, record.n_stopped) == (4 * 2 * 2, 4 + 1, 0)
    # the cross-validated Dice is the test parts' Dice, not the search-validation (reward) Dice
    assert record.arms["all"]["cv_dice_mean"] == pytest.approx(0.75) and record.arms["proxy"]["search_hours"] == pytest.approx(1.0)
    assert record.arms["all"]["search_validation_dice_mean"] == pytest.approx(0.85) and record.arms["all"]["internal_test_dice_mean"] == pytest.approx(0.70)
    assert record.metrics["proxy_speedup"] == pytest.approx(4.0) and record.metrics["proxy_cv_dice_change"] == pytest.approx(-0.1)
    assert record.metrics[names.TOTAL_GPU_HOURS] == pytest.approx(5.0) and record.metrics[names.BEST_VAL_DICE] == pytest.approx(0.85)
    assert record.sets["internal_test"] == 3
    assert record.sets["folds"] == [
        {"fold": 0, "search_train": 3, "search_validation": 1, "test": 2, "proxy": 2},
        {"fold": 1, "search_train": 3, "search_validation": 1, "test": 2, "proxy": 2},
    ]


def test_the_markdown_names_each_set_its_size_and_the_protocol(nas: tuple[StudyConfig, NasPlan, list[Path]]) -> None:
    markdown = nas_report.render(nas_report.collect(*nas)).markdown
    assert "2-fold nested cross-validation" in markdown and "Protocol: nested cross-validation" in markdown
    assert "| fold | search-train (children train) | search-validation (reward) | untouched test (cross-validated Dice) |" in markdown
    assert "| 0 | 3 (proxy data set: 2) | 1 | 2 |" in markdown
    assert "Internal test: the study's 3 held-out cases, read by no search" in markdown
    assert "Children trained: 16 (5 failed: out of memory or diverged, rewarded 0; 0 stopped early" in markdown
    assert "| search on all data (the paper) | 0.7500 ± 0.0707 | 0.7000 | 0.8500 |" in markdown


def test_render_draws_the_controller_per_fold_and_arm(nas: tuple[StudyConfig, NasPlan, list[Path]]) -> None:
    rendered = nas_report.render(nas_report.collect(*nas))
    entropy, reward, same = rendered.figures["controller"].axes
    assert [axis.get_title() for axis in (entropy, reward, same)] == [
        "controller entropy", "reward (mean search-validation Dice of the children)", "children equal to the most likely network",
    ]
    assert [line.get_label() for line in entropy.get_lines()] == ["all, fold 0", "all, fold 1", "proxy, fold 0", "proxy, fold 1"]
    assert [line.get_linestyle() for line in entropy.get_lines()] == ["-", "-", "--", "--"]
    assert list(reward.get_lines()[0].get_ydata()) == pytest.approx([0.2, 0.45])
    assert list(same.get_lines()[0].get_ydata()) == pytest.approx([0.5, 1.0])
    assert rendered.markdown.startswith("# NAS study `nas-report`")
    assert "4.00× fewer device-hours" in rendered.markdown and "![controller](controller.png)" in rendered.markdown


def test_write_nas_report_publishes_on_the_parent_run(nas: tuple[StudyConfig, NasPlan, list[Path]], tmp_path: Path) -> None:
    study, plan, files = nas
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.start_parent_run(study.name, "nas", config={}, tracking_uri=uri)
    summary = nas_report.write_nas_report(study, plan, files, parent, markdown=tmp_path / "r.md", html=tmp_path / "r.html", tracking_uri=uri)
    assert (summary["n_trials"], summary["n_failed"], summary["n_stopped"], summary["total_gpu_hours"]) == (16, 5, 0, pytest.approx(5.0))
    assert summary["sets"]["protocol"].startswith("nested cross-validation")
    client = tracking.client(uri)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.metrics["proxy_speedup"] == pytest.approx(4.0)
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {names.REPORT_ARTIFACT, "controller.png", names.SUMMARY_ARTIFACT, nas_report.FOLD_RESULTS_ARTIFACT} <= artifacts
    folds = json.loads(Path(client.download_artifacts(parent, nas_report.FOLD_RESULTS_ARTIFACT, str(tmp_path / "dl"))).read_text())
    assert [(f["arm"], f["fold"]) for f in folds] == [("all", 0), ("all", 1), ("proxy", 0), ("proxy", 1)]
    assert "<title>NAS study nas-report</title>" in (tmp_path / "r.html").read_text()


def test_a_multi_class_nas_study_reports_each_classes_dice(nas: tuple[StudyConfig, NasPlan, list[Path]], tmp_path: Path) -> None:
    """Each arm's cross-validated and internal test Dice per class (the folds' test_class_dice and internal_test_class_dice):
    in the record, the parent run's metrics and the table, each under its arm; a binary study has none."""
    study, plan, files = nas
    per_class = {  # (arm, fold) -> (test part, internal test) Dice per class
        ("all", 0): ({"edema": 0.9, "enhancing tumour": 0.7}, {"edema": 0.8, "enhancing tumour": 0.6}),
        ("all", 1): ({"edema": 0.8, "enhancing tumour": 0.6}, {"edema": 0.7, "enhancing tumour": 0.7}),
        ("proxy", 0): ({"edema": 0.6, "enhancing tumour": 0.8}, {"edema": 0.5, "enhancing tumour": 0.9}),
        ("proxy", 1): ({"edema": 0.7, "enhancing tumour": 0.5}, {"edema": 0.6, "enhancing tumour": 0.6}),
    }
    classed = []
    for path in files:
        result = NasFoldResult.read(path)
        test, internal = per_class[(result.arm, result.fold)]
        classed.append(tmp_path / path.name)
        classed[-1].write_text(result.model_copy(update={"test_class_dice": test, "internal_test_class_dice": internal}).model_dump_json())
    record = nas_report.collect(study, plan, classed)
    cv = record.arms["all"]["class_cv_dice"]
    assert list(cv) == ["edema", "enhancing tumour"]
    assert cv["edema"]["mean"] == pytest.approx(0.85) and cv["edema"]["std"] == pytest.approx(0.0707107, abs=1e-6)
    assert record.arms["proxy"]["class_internal_test_dice"]["enhancing tumour"]["mean"] == pytest.approx(0.75)
    assert record.metrics["all_cv_dice_mean_class_enhancing_tumour"] == pytest.approx(0.65)
    assert record.metrics["proxy_internal_test_dice_mean_class_edema"] == pytest.approx(0.55)
    lines = nas_report.render(record).markdown.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("| search on all data (the paper) |")))
    assert lines[at + 1] == "| &nbsp;&nbsp;class edema | 0.8500 ± 0.0707 | 0.7500 | | | |"
    assert lines[at + 2] == "| &nbsp;&nbsp;class enhancing tumour | 0.6500 ± 0.0707 | 0.6500 | | | |"
    assert lines[at + 3].startswith("| search on the proxy data set |")
    # the binary study: no class rows, no per-class metrics
    binary = nas_report.collect(study, plan, files)
    assert binary.arms["all"]["class_cv_dice"] == {} and not any("_class_" in key for key in binary.metrics)
    assert "&nbsp;&nbsp;class " not in nas_report.render(binary).markdown
