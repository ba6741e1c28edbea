"""The hyper-parameter search space, declared as data in the study config.

A search space is an ordered mapping from a hyper-parameter's name to its distribution. The order is
the order in which the controller emits the hyper-parameters (each decision conditions the next one).
In a study config it is written as YAML::

    search_space:
      lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-2}
      optimizer: {type: categorical, choices: [adam, rmsprop, adamax, novograd]}
      intensity_shift_prob: {type: uniform, low: 0.0, high: 1.0}

Continuous distributions map their range onto the unit interval (``to_unit`` / ``from_unit``), linearly
for :class:`Uniform` and on a log scale for :class:`LogUniform`; the controller works on that interval.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, RootModel, field_validator, model_validator

from proxyhpo.config.base import StrictModel, parse_config

__all__ = [
    "Choice",
    "Categorical",
    "Uniform",
    "LogUniform",
    "Distribution",
    "SearchSpace",
    "default_search_space",
    "parse_search_space",
]

#: A value a categorical hyper-parameter can take (kept JSON-serialisable so histories stay readable).
Choice = str | int | float | bool


class Categorical(StrictModel):
    """One of a finite list of choices, e.g. the optimiser.

    Args:
        choices: the values, non-empty and without duplicates.

    Example:
        >>> Categorical(choices=["adam", "rmsprop"]).index("rmsprop")
        1
    """

    type: Literal["categorical"] = "categorical"
    choices: tuple[Choice, ...]

    @field_validator("choices")
    @classmethod
    def _check_choices(cls, choices: tuple[Choice, ...]) -> tuple[Choice, ...]:
        if not choices:
            raise ValueError("choices must list at least one value, got an empty list")
        seen: set[tuple[str, Choice]] = set()
        for choice in choices:
            # keyed with the type so that True and 1 (equal in Python) count as different choices
            key = (type(choice).__name__, choice)
            if key in seen:
                raise ValueError(f"choices must be unique, got {choice!r} more than once in {list(choices)!r}")
            seen.add(key)
        return choices

    @property
    def size(self) -> int:
        """Number of choices."""
        return len(self.choices)

    def index(self, value: Choice) -> int:
        """Position of ``value`` in ``choices``.

        Raises:
            ValueError: when ``value`` is not one of the choices.
        """
        for i, choice in enumerate(self.choices):
            if type(choice) is type(value) and choice == value:
                return i
        raise ValueError(f"value {value!r} is not one of the choices {list(self.choices)!r}")

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices."""
        try:
            self.index(value)
        except ValueError:
            return False
        return True


class _Continuous(StrictModel):
    # subclasses declare ``type``, ``low`` and ``high`` so that ``type`` is dumped first
    if TYPE_CHECKING:
        low: float
        high: float

    @model_validator(mode="after")
    def _check_range(self) -> _Continuous:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite numbers, got low={self.low}, high={self.high}")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")
        return self

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a number in ``[low, high]``."""
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def to_unit(self, value: float) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def from_unit(self, u: float) -> float:  # pragma: no cover - overridden
        raise NotImplementedError


class Uniform(_Continuous):
    """A real number in ``[low, high]`` on a linear scale, e.g. a probability.

    Example:
        >>> Uniform(low=0.0, high=2.0).from_unit(0.25)
        0.5
    """

    type: Literal["uniform"] = "uniform"
    low: float
    high: float

    def to_unit(self, value: float) -> float:
        """Map ``value`` in ``[low, high]`` to ``[0, 1]``."""
        return min(1.0, max(0.0, (value - self.low) / (self.high - self.low)))

    def from_unit(self, u: float) -> float:
        """Map ``u`` in ``[0, 1]`` to ``[low, high]`` (clamped there against rounding)."""
        return min(self.high, max(self.low, self.low + u * (self.high - self.low)))


class LogUniform(_Continuous):
    """A positive real number in ``[low, high]`` on a log scale, e.g. a learning rate.

    Example:
        >>> round(LogUniform(low=1e-4, high=1e-2).from_unit(0.5), 12)
        0.001
    """

    type: Literal["log_uniform"] = "log_uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _check_positive(self) -> LogUniform:
        if not self.low > 0:
            raise ValueError(f"low must be > 0 for a log-uniform range, got low={self.low}")
        return self

    def to_unit(self, value: float) -> float:
        """Map ``value`` in ``[low, high]`` to ``[0, 1]`` on a log scale."""
        if value <= 0:
            return 0.0
        u = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return min(1.0, max(0.0, u))

    def from_unit(self, u: float) -> float:
        """Map ``u`` in ``[0, 1]`` to ``[low, high]`` on a log scale (clamped there against rounding)."""
        if u <= 0.0:
            return self.low
        if u >= 1.0:
            return self.high
        value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return min(self.high, max(self.low, value))


#: One hyper-parameter's distribution; the ``type`` key picks the class.
Distribution = Annotated[Categorical | Uniform | LogUniform, Field(discriminator="type")]


class SearchSpace(RootModel[dict[str, Distribution]]):
    """Ordered mapping ``name -> distribution``; the controller emits hyper-parameters in this order.

    Validation errors carry the hyper-parameter's name in their location (``lr.log_uniform``), so a
    study config error reads ``search_space.lr.log_uniform: low must be > 0 ...``.

    Example:
        >>> space = SearchSpace.model_validate({"lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2}})
        >>> list(space)
        ['lr']
    """

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _check_names(self) -> SearchSpace:
        if not self.root:
            raise ValueError("the search space must declare at least one hyper-parameter, got none")
        for name in self.root:
            if not name or name != name.strip() or any(c.isspace() for c in name):
                raise ValueError(f"hyper-parameter names must be non-empty without spaces, got {name!r}")
        return self

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def __getitem__(self, name: str) -> Categorical | Uniform | LogUniform:
        return self.root[name]

    def __contains__(self, name: object) -> bool:
        return name in self.root

    def items(self) -> list[tuple[str, Categorical | Uniform | LogUniform]]:
        """``(name, distribution)`` pairs in emission order."""
        return list(self.root.items())

    @property
    def names(self) -> tuple[str, ...]:
        """Hyper-parameter names in emission order."""
        return tuple(self.root)

    def check_values(self, values: Mapping[str, Any]) -> None:
        """Check that ``values`` holds exactly one valid value per hyper-parameter.

        Raises:
            ValueError: naming the first missing, unknown or out-of-range hyper-parameter.
        """
        missing = [n for n in self.root if n not in values]
        unknown = [n for n in values if n not in self.root]
        if missing or unknown:
            raise ValueError(f"values must have exactly the keys {list(self.root)}, missing {missing}, unknown {unknown}")
        for name, dist in self.root.items():
            if not dist.contains(values[name]):
                raise ValueError(f"hyper-parameter {name!r}: value {values[name]!r} is outside {dist.model_dump()}")


def default_search_space() -> SearchSpace:
    """The default search space: learning rate (log scale), optimiser, probability of a random intensity shift.

    The paper's RL search estimates the learning rate and the intensity-shift probability only (section 4.2:
    "Learning rate and the probability for the augmentation of a random shift in intensity are estimated via
    AutoML"); the optimiser (the four of the paper's grid) and the ranges are ours.

    Returns:
        ``lr`` log-uniform on [1e-4, 1e-2]; ``optimizer`` one of adam, rmsprop, adamax, novograd;
        ``intensity_shift_prob`` uniform on [0, 1].
    """
    return SearchSpace.model_validate(
        {
            "lr": {"type": "log_uniform", "low": 1.0e-4, "high": 1.0e-2},
            "optimizer": {"type": "categorical", "choices": ["adam", "rmsprop", "adamax", "novograd"]},
            "intensity_shift_prob": {"type": "uniform", "low": 0.0, "high": 1.0},
        }
    )


def parse_search_space(data: Any, source: str | os.PathLike[str] = "search_space") -> SearchSpace:
    """Validate a search-space mapping, turning validation errors into one :class:`ConfigError` line.

    Args:
        data: the ``search_space`` mapping as loaded from YAML or JSON.
        source: the file it came from, named in the error.

    Raises:
        ConfigError: naming the hyper-parameter and what is wrong with it.
    """
    return parse_config(SearchSpace, data, source, prefix="search_space", fix="correct the hyper-parameter's range or choices")
