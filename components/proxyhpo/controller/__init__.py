"""Controllers that search hyper-parameters: the REINFORCE controller for HPO, its search space and its persisted state.

Example:
    >>> from proxyhpo.controller import ReinforceController, default_search_space
    >>> controller = ReinforceController(default_search_space(), seed=0)
    >>> proposals = controller.propose(8)
    >>> stats = controller.update(proposals, [0.5] * 8)
"""

from proxyhpo.controller.reinforce import ControllerPolicy, ReinforceController
from proxyhpo.controller.search_space import (
    Categorical,
    Choice,
    Distribution,
    LogUniform,
    SearchSpace,
    Uniform,
    default_search_space,
    parse_search_space,
)
from proxyhpo.controller.state import (
    SCHEMA_VERSION,
    ControllerConfig,
    ControllerState,
    HistoryRecord,
    Proposal,
    UpdateStats,
    read_history,
    read_state,
    write_state,
)

__all__ = [
    "Categorical",
    "Choice",
    "ControllerConfig",
    "ControllerPolicy",
    "ControllerState",
    "Distribution",
    "HistoryRecord",
    "LogUniform",
    "Proposal",
    "ReinforceController",
    "SCHEMA_VERSION",
    "SearchSpace",
    "Uniform",
    "UpdateStats",
    "default_search_space",
    "parse_search_space",
    "read_history",
    "read_state",
    "write_state",
]
