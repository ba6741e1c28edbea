"""Search space: the default (the paper's lr and shift probability, our optimiser), YAML declaration, validation messages that name the hyper-parameter."""

from __future__ import annotations

import math

import pytest
import yaml
from proxyhpo.config import Categorical, LogUniform, SearchSpace, Uniform, default_search_space, parse_search_space
from proxyhpo.errors import ConfigError, InputError
from pydantic import ValidationError

STUDY_YAML = """
search_space:
  lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-2}
  optimizer: {type: categorical, choices: [adam, rmsprop, adamax, novograd]}
  intensity_shift_prob: {type: uniform, low: 0.0, high: 1.0}
"""


def test_default_space_is_the_papers_lr_and_shift_with_our_optimiser() -> None:
    space = default_search_space()
    assert space.names == ("lr", "optimizer", "intensity_shift_prob")
    assert space["lr"] == LogUniform(low=1e-4, high=1e-2)
    assert space["optimizer"] == Categorical(choices=("adam", "rmsprop", "adamax", "novograd"))
    assert space["intensity_shift_prob"] == Uniform(low=0.0, high=1.0)


def test_yaml_declaration_round_trips_in_order() -> None:
    data = yaml.safe_load(STUDY_YAML)["search_space"]
    space = SearchSpace.model_validate(data)
    assert space == default_search_space()
    assert list(space) == ["lr", "optimizer", "intensity_shift_prob"]
    dumped = space.model_dump(mode="json")
    assert dumped == {
        "lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2},
        "optimizer": {"type": "categorical", "choices": ["adam", "rmsprop", "adamax", "novograd"]},
        "intensity_shift_prob": {"type": "uniform", "low": 0.0, "high": 1.0},
    }
    assert SearchSpace.model_validate_json(space.model_dump_json()) == space


def test_order_decides_emission_order() -> None:
    space = SearchSpace.model_validate({"b": {"type": "uniform", "low": 0, "high": 1}, "a": {"type": "categorical", "choices": ["x"]}})
    assert space.names == ("b", "a")


@pytest.mark.parametrize(
    ("entry", "expected", "config_message"),
    [
        ({"type": "log_uniform", "low": 0.0, "high": 1e-2}, "low must be > 0 for a log-uniform range, got low=0.0", None),
        ({"type": "log_uniform", "low": -1e-3, "high": 1e-2}, "low must be > 0 for a log-uniform range, got low=-0.001", None),
        ({"type": "uniform", "low": 1.0, "high": 1.0}, "low must be below high, got low=1.0, high=1.0", None),
        ({"type": "log_uniform", "low": 1e-2, "high": 1e-4}, "low must be below high, got low=0.01, high=0.0001", None),
        ({"type": "uniform", "low": 0.0, "high": math.inf}, "low and high must be finite numbers", None),
        (
            {"type": "categorical", "choices": []},
            "choices must list at least one value, got an empty list",
            "study.yaml: key 'search_space.my_param.choices': choices must list at least one value, got an empty list;",
        ),
        (
            {"type": "categorical", "choices": ["adam", "sgd", "adam"]},
            "choices must be unique, got 'adam' more than once",
            "study.yaml: key 'search_space.my_param.choices': choices must be unique, got 'adam' more than once in ['adam', 'sgd', 'adam'];",
        ),
        (
            {"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.1},
            "Extra inputs are not permitted",
            "study.yaml: unknown key 'search_space.my_param.step';",
        ),
        ({"type": "normal", "low": 0.0, "high": 1.0}, "does not match any of the expected tags", None),
    ],
)
def test_invalid_distribution_names_the_hyper_parameter(entry: dict, expected: str, config_message: str | None) -> None:
    data = {"optimizer": {"type": "categorical", "choices": ["adam"]}, "my_param": entry}
    with pytest.raises(ValidationError) as raised:
        SearchSpace.model_validate(data)
    assert "my_param" in str(raised.value)
    assert expected in str(raised.value)

    with pytest.raises(ConfigError) as config_error:
        parse_search_space(data, "study.yaml")
    message = str(config_error.value)
    # a check across the keys of the distribution names it, a check of one key names that key
    assert message.startswith(config_message or "study.yaml: search_space.my_param")
    if config_message is None:
        assert expected in message
    assert message.endswith("; fix: correct the hyper-parameter's range or choices")
    assert isinstance(config_error.value, InputError)


def test_empty_space_is_rejected() -> None:
    with pytest.raises(ConfigError, match="at least one hyper-parameter"):
        parse_search_space({}, "study.yaml")


def test_choices_of_equal_value_but_other_type_are_distinct() -> None:
    dist = Categorical(choices=[True, 1, "1"])
    assert [dist.index(True), dist.index(1), dist.index("1")] == [0, 1, 2]
    assert not dist.contains(1.5)
    with pytest.raises(ValueError, match="is not one of the choices"):
        dist.index(False)


@pytest.mark.parametrize("dist", [Uniform(low=-3.0, high=5.0), LogUniform(low=1e-6, high=1e-1)])
def test_unit_mapping_is_inverse_and_bounded(dist: Uniform | LogUniform) -> None:
    for u in (0.0, 0.1, 0.5, 0.9, 1.0):
        value = dist.from_unit(u)
        assert dist.low <= value <= dist.high
        assert dist.to_unit(value) == pytest.approx(u, abs=1e-12)
    assert dist.from_unit(0.0) == dist.low and dist.from_unit(1.0) == dist.high


def test_log_uniform_maps_on_a_log_scale() -> None:
    assert LogUniform(low=1e-4, high=1e-2).from_unit(0.5) == pytest.approx(1e-3, rel=1e-12)
    assert Uniform(low=1e-4, high=1e-2).from_unit(0.5) == pytest.approx(5.05e-3, rel=1e-12)


def test_check_values() -> None:
    space = default_search_space()
    space.check_values({"lr": 1e-3, "optimizer": "adam", "intensity_shift_prob": 0.2})
    with pytest.raises(ValueError, match="'lr': value 0.5 is outside"):
        space.check_values({"lr": 0.5, "optimizer": "adam", "intensity_shift_prob": 0.2})
    with pytest.raises(ValueError, match=r"missing \['optimizer'\], unknown \['opt'\]"):
        space.check_values({"lr": 1e-3, "opt": "adam", "intensity_shift_prob": 0.2})


def test_distributions_are_frozen() -> None:
    dist = Uniform(low=0.0, high=1.0)
    with pytest.raises(ValidationError):
        dist.low = 0.5  # type: ignore[misc]
