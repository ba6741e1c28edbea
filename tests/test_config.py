"""Study configs: every example loads; bad keys and values are errors naming the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import SelectionConfig, StudyConfig, load_config, load_study
from proxyhpo.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    study = load_study(path)
    assert isinstance(study, StudyConfig) and study.name


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: s\ndata: {dataset: d}\nsearch: {roundz: 3}\n", "unknown key 'search.roundz'"),
        ("name: s\ndata: {dataset: d}\nbogus: 1\n", "unknown key 'bogus'"),
        ("name: s\n", "required key 'data' is missing"),
        ("name: s\ndata: {dataset: d}\nselection: {budget: 1}\n", "key 'selection.budget': Input should be greater than or equal to 2 (got 1)"),
        ("name: s\ndata: {dataset: d}\nselection: {method: mutual}\n", "key 'selection.method'"),
        ("name: s\ndata: {dataset: d}\nsearch: {space: {lr: {type: log_uniform, low: 0, high: 1}}}\n", "search.space.lr"),
        ("name: [unclosed\n", "is not valid YAML at line 2, column 1"),
        ("- a\n- b\n", "holds a list, not a mapping"),
    ],
)
def test_bad_configs_name_the_key_and_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message
    assert "; fix: " in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_study(tmp_path / "absent.yaml")


def test_patch_too_small_for_the_full_network(tmp_path: Path) -> None:
    text = (
        "name: s\ndata: {dataset: d}\ntraining:\n  recipe: {name: t, intensity: {kind: normalize}, "
        "patch_size: [16, 16, 16], roi_size: [32, 32, 32]}\n"
    )
    with pytest.raises(ConfigError, match=r"1x1x1 voxel.*final.network: full"):
        load_study(_write(tmp_path, text))


def test_patch_not_a_multiple_for_the_proxy_levels(tmp_path: Path) -> None:
    text = (
        "name: s\ndata: {dataset: d}\ntraining:\n  proxy_levels: 4\n  recipe: {name: t, intensity: {kind: normalize}, "
        "patch_size: [36, 36, 36], roi_size: [64, 64, 64]}\n"
    )
    with pytest.raises(ConfigError, match=r"multiple of 2\^\(levels-1\) = 8"):
        load_study(_write(tmp_path, text))


def test_selection_method_implies_metric_and_crop() -> None:
    assert (SelectionConfig(method="mi+labelcrop").metric, SelectionConfig(method="mi+labelcrop").crop) == ("mi", "label")
    assert (SelectionConfig(method="ncc").metric, SelectionConfig(method="ncc").crop) == ("ncc", "none")
    assert SelectionConfig(method="random").metric is None


def test_load_config_for_any_model(tmp_path: Path) -> None:
    path = tmp_path / "selection.yaml"
    path.write_text("method: random\nbudget: 4\nseed: 7\n")
    assert load_config(SelectionConfig, path) == SelectionConfig(method="random", budget=4, seed=7)


@pytest.mark.parametrize(
    "space, expected",
    [
        ("{momentum: {type: uniform, low: 0, high: 1}}", "search.space.momentum is not a hyper-parameter the trainer knows"),
        ("{optimizer: {type: categorical, choices: [sgd, adam]}}", "search.space.optimizer allows 'sgd'"),
        ("{intensity_shift_prob: {type: uniform, low: 0, high: 2}}", "search.space.intensity_shift_prob allows 2.0"),
    ],
)
def test_search_space_must_be_trainable(tmp_path: Path, space: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_study(_write(tmp_path, f"name: s\ndata: {{dataset: d}}\nsearch: {{space: {space}}}\n"))


def test_similarity_metric_contradicting_the_selection_method(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="similarity.metric is 'ncc' but selection.method 'mi' implies 'mi'"):
        load_study(_write(tmp_path, "name: s\ndata: {dataset: d}\nsimilarity: {metric: ncc}\nselection: {method: mi}\n"))


def test_submit_refuses_local_data(tmp_path: Path) -> None:
    from pipelines.launch import submit

    study = load_study(Path(__file__).parent.parent / "examples" / "spleen.yaml")
    with pytest.raises(ConfigError, match="data.dataset: is the local path '/data/Task09_Spleen'"):
        submit(study, "http://127.0.0.1:9")  # fails before any connection is attempted
