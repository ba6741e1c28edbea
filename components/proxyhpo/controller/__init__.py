"""Controllers: the REINFORCE controller for HPO (its rounds, its persisted state) and the ENAS controller for NAS.

The records it reads and writes (search space, settings, proposals, rewards, packs) live in the schema
layer, :mod:`proxyhpo.config`.

Example:
    >>> from proxyhpo.config import default_search_space
    >>> from proxyhpo.controller import ReinforceController
    >>> controller = ReinforceController(default_search_space(), seed=0)
    >>> proposals = controller.propose(8)
    >>> stats = controller.update(proposals, [0.5] * 8)
"""

from typing import TYPE_CHECKING, Any

from proxyhpo.controller.state import read_history, read_state, read_state_json, write_state

if TYPE_CHECKING:
    from proxyhpo.controller.enas import EnasController, EnasPolicy
    from proxyhpo.controller.reinforce import ControllerPolicy, ReinforceController

__all__ = ["ControllerPolicy", "EnasController", "EnasPolicy", "ReinforceController", "read_history", "read_state", "read_state_json", "write_state"]


def __getattr__(name: str) -> Any:
    # The policy needs torch; readers of a state file (the report) do not, so it is imported on first use.
    if name in ("ControllerPolicy", "ReinforceController"):
        from proxyhpo.controller import reinforce

        return getattr(reinforce, name)
    if name in ("EnasController", "EnasPolicy"):
        from proxyhpo.controller import enas

        return getattr(enas, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
