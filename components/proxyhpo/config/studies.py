"""The paper's comparison studies (section 4): the grid every arm trains, the arms, the repeats, the trust check.

A comparison study trains the same grid of hyper-parameter settings in several *arms* (a way to get
data and a network: all data with the full U-Net, a proxy data set, a proxy network) and *repeats*
(different splits and initialisations), then asks whether an arm ranks the settings the way the full
setting does. The work unit is a :class:`StudyCell`: one arm in one repeat, its whole grid trained as
one pack on one device.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from proxyhpo.config.base import RECORDED, Record, StrictModel
from proxyhpo.config.network import NetworkConfig
from proxyhpo.config.search_space import Choice
from proxyhpo.config.selection import SelectionMethod, selection_methods
from proxyhpo.config.trial import HyperParameters
from proxyhpo.registry import STUDY_PIPELINES

__all__ = [
    "SEARCH_ARMS",
    "PAPER_ARMS",
    "LEVERS",
    "LEVER_ARMS",
    "REFERENCE_ARMS",
    "arm_levers",
    "arm_seed",
    "NonInferiorityConfig",
    "ComparisonConfig",
    "GridPoint",
    "ProxyDataStudyConfig",
    "ProxyNetStudyConfig",
    "TrustConfig",
    "StudiesConfig",
    "StudyCell",
    "grid_points",
]

#: The ways the automl comparison runs the RL search, and the data and the network of each: the paper's five
#: (Table 2; packing and early stopping as the study sets them), then the lever ladder of :data:`LEVER_ARMS`.
SEARCH_ARMS: dict[str, tuple[str, str]] = {
    "all-data": ("full", "full"),
    "proxy-data": ("proxy", "full"),
    "proxy-net": ("full", "proxy"),
    "proxy-data-net": ("proxy", "proxy"),
    "random-data": ("random", "full"),
    "full-search": ("full", "full"),
    "plus-proxy-data": ("proxy", "full"),
    "plus-proxy-net": ("proxy", "proxy"),
    "plus-packing": ("proxy", "proxy"),
    "plus-early-stopping": ("proxy", "proxy"),
}
#: The paper's five arms (Table 2): the comparison's default.
PAPER_ARMS = ("all-data", "proxy-data", "proxy-net", "proxy-data-net", "random-data")
#: The levers that make a search cheap, in the order the ladder adds them.
LEVERS = ("proxy-data", "proxy-net", "packing", "early-stopping")
#: The lever ladder (the headline figure, issue 12): ``full-search`` is the full search (all data, the full network,
#: one trial per device, no early stopping); each next arm adds one lever (arm -> the lever it adds), so that
#: ``plus-early-stopping`` has all four. Data and network per :data:`SEARCH_ARMS`; packing (the study's
#: ``training.pack_size``, else 1) and early stopping (the study's ``search.early_stopping``, else none) per
#: :func:`arm_levers`, applied by :meth:`~proxyhpo.config.StudyConfig.for_search_arm`.
LEVER_ARMS: dict[str, str | None] = {
    "full-search": None,
    "plus-proxy-data": "proxy-data",
    "plus-proxy-net": "proxy-net",
    "plus-packing": "packing",
    "plus-early-stopping": "early-stopping",
}
#: The arms a comparison may take as its reference, the first present winning: its speed-ups and distances are measured against it.
REFERENCE_ARMS = ("all-data", "full-search")


def arm_levers(arm: str) -> tuple[str, ...] | None:
    """The levers a ladder arm has switched on (:data:`LEVER_ARMS`: its own and every earlier one's); None for the paper's arms.

    Example:
        >>> arm_levers("plus-proxy-net"), arm_levers("full-search"), arm_levers("proxy-data")
        (('proxy-data', 'proxy-net'), (), None)
    """
    if arm not in LEVER_ARMS:
        return None
    ladder = list(LEVER_ARMS)
    return tuple(lever for lever in (LEVER_ARMS[a] for a in ladder[: ladder.index(arm) + 1]) if lever is not None)

#: The paper's grid (section 4.2): four optimisers at four learning rates.
PAPER_GRID: dict[str, tuple[Choice, ...]] = {
    "optimizer": ("adam", "rmsprop", "adamax", "novograd"),
    "lr": (0.001, 0.0006, 0.0004, 0.0001),
}

Grid = dict[str, tuple[Choice, ...]]


class GridPoint(StrictModel):
    """One setting of the grid: its id (``optimizer=adam,lr=0.001``) and its hyper-parameter values."""

    point_id: str
    hyperparameters: dict[str, Choice]


def grid_points(grid: Grid) -> list[GridPoint]:
    """Every combination of the grid's values, the first name varying slowest.

    Example:
        >>> [p.point_id for p in grid_points({"optimizer": ("adam", "rmsprop"), "lr": (0.001,)})]
        ['optimizer=adam,lr=0.001', 'optimizer=rmsprop,lr=0.001']
    """
    names = list(grid)
    return [
        GridPoint(point_id=",".join(f"{name}={value}" for name, value in zip(names, values, strict=True)), hyperparameters=dict(zip(names, values, strict=True)))
        for values in itertools.product(*(grid[name] for name in names))
    ]


def _check_grid(grid: Grid) -> Grid:
    if not grid:
        raise ValueError("the grid must name at least one hyper-parameter")
    known = HyperParameters.model_fields
    for name, values in grid.items():
        if name not in known:
            raise ValueError(f"grid.{name} is not a hyper-parameter the trainer knows; use {sorted(known)}")
        if not values:
            raise ValueError(f"grid.{name} lists no values")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"grid.{name} lists a value twice: {list(values)}")
        for value in values:
            try:
                HyperParameters.model_validate({"lr": 1e-3, name: value})
            except ValidationError as exc:
                raise ValueError(f"grid.{name} lists {value!r}, which training rejects: {exc.errors()[0]['msg']}") from None
    return grid


class ProxyDataStudyConfig(StrictModel):
    """The proxy-data study (``proxy-data-study``): which proxy data set ranks the grid like all data?

    Attributes:
        methods: selection methods compared (the paper: all five).
        budgets: proxy data set sizes B (the paper: 4, 6, 8, 10); each chosen set is split 50/50
            (``data.val_fraction``) into training and validation anew in every repeat.
        repeats: repeats per arm (the paper: 7), each with its own split and initialisation; the
            ground truth (all data, full network) is repeated as often over random splits of all cases.
        network: the network every arm trains; ours: the full U-Net, so only the data differ.
        table_budget: the budget of the paper's Table 1 (default: the largest).
    """

    methods: tuple[SelectionMethod, ...] = Field(default_factory=selection_methods)
    budgets: tuple[int, ...] = (4, 6, 8, 10)
    repeats: int = Field(7, ge=1)
    network: Literal["full", "proxy"] = "full"
    table_budget: int | None = None

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, budgets: tuple[int, ...]) -> tuple[int, ...]:
        if not budgets or any(b < 2 for b in budgets):
            raise ValueError(f"budgets must list sizes of at least 2 (one case to train, one to validate), got {list(budgets)}")
        return tuple(sorted(set(budgets)))

    @model_validator(mode="after")
    def _table_budget_is_a_budget(self) -> ProxyDataStudyConfig:
        if not self.methods:
            raise ValueError("methods must list at least one selection method")
        if self.table_budget is not None and self.table_budget not in self.budgets:
            raise ValueError(f"table_budget {self.table_budget} is not one of the budgets {list(self.budgets)}")
        return self

    @property
    def budget_of_table(self) -> int:
        """The budget Table 1 reports."""
        return self.table_budget if self.table_budget is not None else max(self.budgets)


class ProxyNetStudyConfig(StrictModel):
    """The proxy-network study (``proxy-net-study``): do proxy U-Nets rank the grid like the full one?

    Attributes:
        levels: levels of the proxy networks compared (the paper: 5, 4 and 3; 4 channels, 1 residual unit).
        repeats: random splits of all cases, each with its own initialisation (the paper: 7); every
            network trains on the same split in a repeat.
    """

    levels: tuple[int, ...] = (5, 4, 3)
    repeats: int = Field(7, ge=1)

    @field_validator("levels")
    @classmethod
    def _levels(cls, levels: tuple[int, ...]) -> tuple[int, ...]:
        if not levels or any(not 3 <= level <= 5 for level in levels):
            raise ValueError(f"levels must be in 3..5, got {list(levels)}")
        return tuple(sorted(set(levels), reverse=True))


class TrustConfig(StrictModel):
    """The trust check (``proxyhpo trust``): before a heavy search, does the proxy rank a small grid like the full setting?

    The proxy setting is the study's own (``selection`` and ``training.network``); the reference is all
    data with the full network. Both train ``grid`` over ``repeats``; the coefficient correlates the two
    arms' mean Dice per grid point. The proxy is trusted only when the lower bound of the coefficient's
    one-sided ``confidence`` interval (Fisher's z, Bonett-Wright standard error:
    :func:`proxyhpo.trust_bound.correlation_lower_bound`) reaches ``threshold``, not the coefficient itself.

    Attributes:
        repeats: repeats of each setting.
        metric: the rank correlation the verdict uses; Spearman by default (ranking is what a search needs).
        dice: which Dice is correlated: ``internal`` (each setting's own validation Dice, what the search
            optimises) or ``external`` (the external set, when the study has one).
        threshold: the lower bound the proxy must reach to be trusted.
        confidence: the one-sided interval's confidence (0.95: the bound is rho's 5th percentile).
        grid: the calibration grid; ours: six learning rates, the searched hyper-parameter that moves Dice
            most. It must be large enough that a proxy unrelated to the full setting is trusted at most 5%
            of the time (:func:`proxyhpo.trust_bound.false_trust_rate`, exact) and a perfect ranking is
            trusted: six points at threshold 0.5 and confidence 0.95 (declared last: its check reads the
            other keys).
    """

    repeats: int = Field(2, ge=1)
    metric: Literal["pearson", "spearman", "kendall"] = "spearman"
    dice: Literal["internal", "external"] = "internal"
    threshold: float = Field(0.5, ge=-1.0, le=1.0)
    confidence: float = Field(0.95, ge=0.5, lt=1.0)
    grid: Grid = Field(default_factory=lambda: {"lr": (0.002, 0.001, 0.0006, 0.0004, 0.0002, 0.0001)}, validate_default=True)

    @field_validator("grid")
    @classmethod
    def _valid_grid(cls, grid: Grid, info: ValidationInfo) -> Grid:
        grid = _check_grid(grid)
        if not {"metric", "threshold", "confidence"} <= set(info.data):
            return grid  # another key is invalid and is reported instead
        if info.context and info.context.get(RECORDED):
            return grid  # a study read back from its run: its report must stay readable under a rule added since
        from proxyhpo.trust_bound import MAX_FALSE_TRUST, correlation_lower_bound, false_trust_rate, smallest_trust_grid

        metric, threshold, confidence = info.data["metric"], info.data["threshold"], info.data["confidence"]
        n_points = len(grid_points(grid))
        perfect = correlation_lower_bound(metric, 1.0, n_points, confidence)
        chance = false_trust_rate(metric, n_points, threshold, confidence)
        if perfect is not None and perfect >= threshold and chance <= MAX_FALSE_TRUST:
            return grid
        setting = f"{metric}'s {confidence:g} lower bound >= {threshold:g}"
        if perfect is None or perfect < threshold:
            reached = f"{perfect:.2f}" if perfect is not None else "none"
            problem = f"{n_points} grid points are too few for {setting}: even a perfect ranking has a lower bound of {reached}"
        else:
            problem = f"on {n_points} grid points, {setting} trusts a proxy unrelated to the full setting {chance:.1%} of the time (at most {MAX_FALSE_TRUST:.0%})"
        needed = smallest_trust_grid(metric, threshold, confidence)
        fix = f"list at least {needed} grid points, or lower studies.trust.threshold" if needed else "raise studies.trust.threshold (chance reaches it on any grid)"
        raise ValueError(f"{problem}; {fix}")


ArmName = Literal[
    "all-data", "proxy-data", "proxy-net", "proxy-data-net", "random-data",
    "full-search", "plus-proxy-data", "plus-proxy-net", "plus-packing", "plus-early-stopping",
]


def arm_seed(seed: int, arm: str) -> int:
    """The seed of ``arm``'s own random stream, derived from the study's ``seed``: the one place arms' seeds come from.

    A CRC-32 of the arm's name keeps the mapping stable across processes (Python's ``hash`` of a string is
    salted per process); the result stays a non-negative 31-bit integer, as torch and numpy accept.

    Example:
        >>> arm_seed(0, "full-search") != arm_seed(0, "plus-early-stopping"), arm_seed(3, "all-data") == arm_seed(3, "all-data")
        (True, True)
    """
    return (seed * 1_000_003 + zlib.crc32(arm.encode("utf-8"))) % 2**31


class NonInferiorityConfig(StrictModel):
    """The headline's non-inferiority test, fixed before the comparison runs (issue 18).

    Per seed, the difference ``d = Dice(levers arm) - Dice(full search)`` of the final models' internal test
    Dice (each a mean over ``studies.comparison.repeats`` initialisations); the levers arm is non-inferior when
    the one-sided ``confidence`` interval of the mean ``d`` has its lower bound above ``-margin``.

    Attributes:
        margin: the largest Dice loss (absolute, on the 0-1 scale) that still counts as no loss: 0.01 = 1 point.
        test: ``paired-t`` (one-sided paired t interval) or ``paired-bootstrap`` (one-sided percentile bootstrap of the mean).
        confidence: the interval's one-sided confidence.
        min_seeds: below this many seeds the verdict is "too few seeds", whatever the interval says.
        bootstrap_samples: resamples of ``paired-bootstrap``.
    """

    margin: float = Field(0.01, gt=0.0, lt=1.0)
    test: Literal["paired-t", "paired-bootstrap"] = "paired-t"
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    min_seeds: int = Field(5, ge=2)
    bootstrap_samples: int = Field(10_000, ge=100)


class ComparisonConfig(StrictModel):
    """The automl comparison (``automl-comparison``): the RL search run several ways, each result trained in full.

    Every arm runs the study's search (``search``: rounds, proposals, controller) on its own data and
    network (:data:`SEARCH_ARMS`; proxy data is the study's ``selection``, random data a random draw of
    the same budget, the proxy network ``training.proxy_levels`` levels). Each arm's best
    hyper-parameters then train the final model (``final``) on all data, ``repeats`` times with the same
    split and new initialisations; the paper's Table 2 and Fig. 4C/D. The arms of the lever ladder
    (:data:`LEVER_ARMS`, ``full-search`` to ``plus-early-stopping``) also set packing and early stopping,
    one lever at a time: the report's headline (the full search's device-hours over all four levers', and
    each lever's share).

    Seeds: by default every arm gets its own controller and trial seeds, derived from the study's and the
    arm's name by :func:`arm_seed` (:meth:`~proxyhpo.config.StudyConfig.for_search_arm` applies it), so
    two arms are independent draws. ``paired: true`` shares them on purpose: every arm's controller then
    proposes the same first round (the shared candidates), and the report compares the arms' rankings of
    those candidates instead of their final Dice.

    Attributes:
        arms: the searches compared; a reference must be one of them: ``all-data`` (the paper's), else
            ``full-search``.
        repeats: final models per arm (the paper: 5).
        paired: share the controller and trial seeds between arms (see above); False: independent streams.
        noninferiority: the headline's test, stated before running (see :class:`NonInferiorityConfig`).
    """

    arms: tuple[ArmName, ...] = PAPER_ARMS
    repeats: int = Field(5, ge=1)
    paired: bool = False
    noninferiority: NonInferiorityConfig = Field(default_factory=lambda: NonInferiorityConfig())

    @field_validator("arms")
    @classmethod
    def _reference_is_an_arm(cls, arms: tuple[str, ...]) -> tuple[str, ...]:
        if not any(reference in arms for reference in REFERENCE_ARMS):
            raise ValueError(f"arms must include a reference, 'all-data' or 'full-search' (the lever ladder's), got {list(arms)}")
        if len(set(arms)) != len(arms):
            raise ValueError(f"arms lists an arm twice: {list(arms)}")
        return arms


class StudiesConfig(StrictModel):
    """The ``studies`` section of a study config: the comparison studies and the trust check.

    Attributes:
        grid: the hyper-parameter settings every arm trains (the paper's: four optimisers x four lrs).
        proxy_data, proxy_net: the two comparison studies.
        trust: the trust check.
    """

    grid: Grid = Field(default_factory=lambda: dict(PAPER_GRID))
    proxy_data: ProxyDataStudyConfig = Field(default_factory=ProxyDataStudyConfig)
    proxy_net: ProxyNetStudyConfig = Field(default_factory=ProxyNetStudyConfig)
    trust: TrustConfig = Field(default_factory=TrustConfig)
    comparison: ComparisonConfig = Field(default_factory=ComparisonConfig)

    def trial_count(self, kind: str) -> int:
        """How many trials comparison study ``kind`` trains (arms x repeats x grid points)."""
        if kind == "proxy-data-study":
            arms, repeats, points = 1 + len(self.proxy_data.methods) * len(self.proxy_data.budgets), self.proxy_data.repeats, len(grid_points(self.grid))
        elif kind == "proxy-net-study":
            arms, repeats, points = 1 + len(self.proxy_net.levels), self.proxy_net.repeats, len(grid_points(self.grid))
        elif kind == "trust":
            arms, repeats, points = 2, self.trust.repeats, len(grid_points(self.trust.grid))
        else:
            raise ValueError(f"kind must be one of proxy-data-study, proxy-net-study, trust, got {kind!r}")
        return arms * repeats * points

    @field_validator("grid")
    @classmethod
    def _valid_grid(cls, grid: Grid) -> Grid:
        return _check_grid(grid)


class StudyCell(Record):
    """One arm of a comparison study in one repeat: its data, its network; its grid trains as one pack.

    Attributes:
        study: the study pipeline the cell belongs to (``proxy-data-study``, ``proxy-net-study``, ``trust``), a
            :data:`~proxyhpo.registry.STUDY_PIPELINES` name.
        arm: the arm's label: ``full``, a selection method and budget (``mi+labelcrop-8``), or a network
            (``proxy-L3``); it is the trials' ``proxyhpo.arm`` tag.
        repeat: the repeat, 0-based; seeds the split and the initialisation.
        network: the network every trial of the cell trains.
        train_ids, val_ids: the cell's cases.
        data_fraction: share of all the data set's cases the cell trains and validates on.
        selection_seconds: device time the selection of this arm's data took (similarity and ranking),
            counted once per search in the arm's cost; 0 for all data.
        selection_device: where the selection ran (``cpu`` or ``cuda``).
    """

    WRITTEN_BY = "the study's plan step"

    study: Annotated[str, AfterValidator(STUDY_PIPELINES.check)]
    arm: str = Field(min_length=1)
    repeat: int = Field(ge=0)
    network: NetworkConfig
    train_ids: tuple[str, ...] = Field(min_length=1)
    val_ids: tuple[str, ...] = Field(min_length=1)
    data_fraction: float = Field(gt=0.0, le=1.0)
    selection_seconds: float = Field(0.0, ge=0.0)
    selection_device: str = "cpu"
