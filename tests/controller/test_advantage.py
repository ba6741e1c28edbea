"""Ours in the REINFORCE controller: the normalised advantage, several steps a round, and the settings each strategy uses."""

from __future__ import annotations

import torch

from proxyhpo.config import StudyConfig
from proxyhpo.controller.reinforce import ReinforceController
from proxyhpo.registry import SEARCH_STRATEGIES


def policy_after(rewards: list[float], *, scale: float = 1.0, offset: float = 0.0, **options: object) -> list[torch.Tensor]:
    """The policy after two rounds: ``rewards``, then half of them, each mapped by ``offset + scale * reward``."""
    controller = ReinforceController(seed=0, **options)
    for factor in (1.0, 0.5):
        proposals = controller.propose(len(rewards))
        controller.update(proposals, [offset + scale * factor * r for r in rewards])
    return [p.detach().clone() for p in controller.policy.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(x, y, rtol=0, atol=1e-9) for x, y in zip(a, b, strict=True))


def test_a_normalised_advantage_moves_the_policy_alike_at_any_reward_scale() -> None:
    small = [0.01, 0.03, 0.0, 0.06]
    # the same rewards ten times as spread and shifted: the same ranking, the same normalised advantages
    assert same(policy_after(small, advantage="normalized"), policy_after(small, scale=10.0, offset=0.2, advantage="normalized"))
    # the paper's raw advantage does not: its step depends on the rewards' scale
    assert not same(policy_after(small), policy_after(small, scale=10.0, offset=0.2))


def test_more_steps_a_round_move_the_policy_further() -> None:
    start = [p.detach().clone() for p in ReinforceController(seed=0).policy.parameters()]

    def distance(after: list[torch.Tensor]) -> float:
        return float(sum(((a - b) ** 2).sum() for a, b in zip(after, start, strict=True)))

    rewards = [0.1, 0.5, 0.2, 0.9]
    assert distance(policy_after(rewards, updates_per_round=4)) > 2 * distance(policy_after(rewards))


def test_reinforce_uses_ours_where_the_study_keeps_the_paper_default_and_reinforce_paper_the_papers() -> None:
    space = {"lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2}}
    study = StudyConfig.model_validate({"name": "s", "data": {"dataset": "/nowhere"}, "search": {"space": space}})
    ours = SEARCH_STRATEGIES["reinforce"](study, 3).controller.config
    assert (ours.advantage, ours.updates_per_round, ours.lr, ours.seed) == ("normalized", 2, 0.05, 3)
    paper = SEARCH_STRATEGIES["reinforce-paper"](study, 3).controller.config
    assert (paper.advantage, paper.updates_per_round, paper.lr) == ("raw", 1, 0.02)
    chosen = StudyConfig.model_validate(study.model_dump() | {"search": study.search.model_dump() | {"controller": {"lr": 0.07}}})
    assert SEARCH_STRATEGIES["reinforce"](chosen, 0).controller.config.lr == 0.07  # the study's own choice stays
