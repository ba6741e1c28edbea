"""REINFORCE controller: bounded proposals, determinism, learning, failed trials, entropy bonus, argument checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from proxyhpo.config import Categorical, ControllerConfig, Proposal, SearchSpace, default_search_space
from proxyhpo.controller import ReinforceController
from proxyhpo.controller.reinforce import kumaraswamy_entropy, kumaraswamy_icdf, kumaraswamy_log_prob

Reward = Callable[[Mapping[str, Any]], float]


def _weights(controller: ReinforceController) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in controller.policy.state_dict().items()}


def test_kumaraswamy_matches_torch_distribution() -> None:
    a = torch.tensor([1.0, 1.5, 3.0, 1.0, 8.0], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0, 1.2, 6.0, 20.0], dtype=torch.float64)
    x = torch.tensor([0.3, 0.01, 0.95, 0.5, 0.2], dtype=torch.float64)
    reference = torch.distributions.Kumaraswamy(a, b)
    torch.testing.assert_close(kumaraswamy_log_prob(x, a, b), reference.log_prob(x))
    torch.testing.assert_close(kumaraswamy_entropy(a, b), reference.entropy())
    assert kumaraswamy_entropy(torch.tensor(1.0), torch.tensor(1.0)) == pytest.approx(0.0, abs=1e-12)
    # the inverse CDF inverts F(x) = 1 - (1 - x^a)^b
    u = torch.tensor([1e-9, 0.1, 0.5, 0.9, 0.999], dtype=torch.float64)
    samples = kumaraswamy_icdf(u, a, b)
    torch.testing.assert_close(1 - (1 - samples**a) ** b, u, rtol=1e-7, atol=1e-12)


def test_proposals_lie_within_bounds_and_choices(mixed_space: SearchSpace) -> None:
    controller = ReinforceController(mixed_space, seed=3)
    proposals = controller.propose(64)
    assert [p.proposal_id for p in proposals] == list(range(64))
    assert all(p.round == 0 for p in proposals)
    for p in proposals:
        mixed_space.check_values(p.hyperparameters)
        assert list(p.hyperparameters) == list(mixed_space.names)
        assert type(p.hyperparameters["levels"]) is int and type(p.hyperparameters["amsgrad"]) is bool
        assert math.isfinite(p.log_prob)
    # a near-uniform initial policy reaches every choice and spreads continuous values over the range
    assert {p.hyperparameters["levels"] for p in proposals} == {3, 4, 5}
    momentum = [p.hyperparameters["momentum"] for p in proposals]
    assert min(momentum) < -2.0 and max(momentum) > 0.0
    decades = [math.log10(p.hyperparameters["weight_decay"]) for p in proposals]
    assert min(decades) < -5.0 and max(decades) > -4.0


def test_initial_policy_is_uniform_over_choices() -> None:
    probabilities = ReinforceController(seed=0).choice_probabilities("optimizer")
    assert probabilities == pytest.approx({"adam": 0.25, "rmsprop": 0.25, "adamax": 0.25, "novograd": 0.25}, abs=1e-12)


def _run(controller: ReinforceController, reward_fn: Reward, rounds: int, m: int) -> list[list[Proposal]]:
    out = []
    for _ in range(rounds):
        proposals = controller.propose(m)
        controller.update(proposals, [reward_fn(p.hyperparameters) for p in proposals])
        out.append(proposals)
    return out


def test_same_seed_and_rewards_give_identical_proposals(reward_fn: Reward) -> None:
    first = _run(ReinforceController(seed=11), reward_fn, rounds=3, m=5)
    second = _run(ReinforceController(seed=11), reward_fn, rounds=3, m=5)
    assert first == second
    other = _run(ReinforceController(seed=12), reward_fn, rounds=1, m=5)
    assert [p.hyperparameters for p in other[0]] != [p.hyperparameters for p in first[0]]


def test_global_rng_is_left_alone(reward_fn: Reward) -> None:
    before = torch.get_rng_state()
    _run(ReinforceController(seed=0), reward_fn, rounds=2, m=3)
    assert torch.equal(torch.get_rng_state(), before)


def test_controller_learns_the_synthetic_optimum(reward_fn: Reward) -> None:
    controller = ReinforceController(seed=0)
    rounds = _run(controller, reward_fn, rounds=30, m=8)
    mean = [sum(reward_fn(p.hyperparameters) for p in proposals) / len(proposals) for proposals in rounds]
    early, late = sum(mean[:3]) / 3, sum(mean[-3:]) / 3
    assert late > early + 0.2, f"mean reward went from {early:.3f} to {late:.3f}"
    probabilities = controller.choice_probabilities("optimizer")
    assert probabilities["adam"] > 0.9, probabilities
    # the learning rate concentrates around 3e-3 (0.5 decade = reward 0.75 on this scale)
    late_lr = [p.hyperparameters["lr"] for proposals in rounds[-3:] for p in proposals]
    assert sum(abs(math.log10(v / 3e-3)) < 0.5 for v in late_lr) / len(late_lr) > 0.7
    best_proposal, best_reward = controller.best()  # type: ignore[misc]
    assert best_reward == max(r.reward for r in controller.history() if r.reward is not None)
    assert best_reward == pytest.approx(reward_fn(best_proposal.hyperparameters))


def test_failed_trials_are_recorded_and_left_out_of_the_gradient() -> None:
    controller = ReinforceController(seed=5, entropy_weight=0.0)
    proposals = controller.propose(4)
    stats = controller.update(proposals, [0.5, None, 0.7, float("nan")])
    assert stats.stepped and stats.n_proposals == 4 and stats.n_failed == 2
    assert stats.mean_reward == pytest.approx(0.6)
    # first round: baseline = mean of the successful rewards, so advantages are -0.1 and +0.1
    assert stats.baseline_before == pytest.approx(0.6)
    expected = -(-0.1 * proposals[0].log_prob + 0.1 * proposals[2].log_prob) / 2
    assert stats.policy_loss == pytest.approx(expected, rel=1e-9)
    history = controller.history()
    assert [(r.proposal, r.reward, r.failed) for r in history] == [
        (proposals[0], 0.5, False),
        (proposals[1], None, True),
        (proposals[2], 0.7, False),
        (proposals[3], None, True),
    ]
    assert controller.best() == (proposals[2], 0.7)


def test_all_failed_takes_no_step_but_ends_the_round() -> None:
    controller = ReinforceController(seed=5)
    before = _weights(controller)
    proposals = controller.propose(3)
    stats = controller.update(proposals, [None, float("nan"), None])
    assert not stats.stepped and stats.n_failed == 3 and stats.mean_reward is None and stats.entropy_bonus is None
    assert all(torch.equal(before[k], v) for k, v in controller.policy.state_dict().items())
    assert controller.round == 1 and controller.baseline is None and controller.best() is None
    assert [r.failed for r in controller.history()] == [True, True, True]
    assert controller.propose(1)[0].round == 1


@pytest.mark.parametrize("entropy_weight", [0.0, 0.05])
def test_entropy_bonus_is_reported_and_enters_the_loss(entropy_weight: float) -> None:
    controller = ReinforceController(seed=1, entropy_weight=entropy_weight)
    proposals = controller.propose(6)
    stats = controller.update(proposals, [0.1 * i for i in range(6)])
    assert stats.entropy is not None and stats.entropy_bonus is not None and stats.policy_loss is not None
    # near-uniform start: log(4) for the optimiser, about 0 for each near-uniform continuous value
    assert stats.entropy == pytest.approx(math.log(4), abs=0.05)
    assert stats.entropy_bonus == pytest.approx(entropy_weight * stats.entropy)
    assert stats.loss == pytest.approx(stats.policy_loss - stats.entropy_bonus)
    assert stats.grad_norm is not None and stats.grad_norm > 0


def test_entropy_bonus_alone_raises_entropy() -> None:
    # equal rewards give zero advantages, so only the entropy bonus moves the policy
    controller = ReinforceController(seed=2, entropy_weight=1.0)
    proposals = controller.propose(4)
    entropies = [controller.update(proposals, [0.5] * 4).entropy]
    for _ in range(5):
        proposals = controller.propose(4)
        entropies.append(controller.update(proposals, [0.5] * 4).entropy)
    assert entropies[-1] > entropies[0]


def test_update_is_independent_of_the_order_of_trials(reward_fn: Reward) -> None:
    forward, backward = ReinforceController(seed=4), ReinforceController(seed=4)
    proposals = forward.propose(5)
    assert backward.propose(5) == proposals
    rewards = [reward_fn(p.hyperparameters) for p in proposals]
    forward.update(proposals, rewards)
    backward.update(proposals[::-1], rewards[::-1])
    assert all(torch.equal(v, backward.policy.state_dict()[k]) for k, v in forward.policy.state_dict().items())
    assert forward.history() == backward.history()


def test_choice_probabilities_do_not_advance_the_sampler() -> None:
    probed, plain = ReinforceController(seed=9), ReinforceController(seed=9)
    probed.choice_probabilities("optimizer", samples=32)
    assert probed.propose(4) == plain.propose(4)
    with pytest.raises(ValueError, match=r"categorical hyper-parameter, one of \['optimizer'\], got 'lr'"):
        probed.choice_probabilities("lr")


def test_propose_twice_extends_the_round() -> None:
    controller = ReinforceController(seed=0)
    first, second = controller.propose(2), controller.propose(3)
    assert [p.proposal_id for p in first + second] == [0, 1, 2, 3, 4]
    assert controller.pending() == first + second
    with pytest.raises(ValueError, match=r"rewards are missing for pending proposals \[2, 3, 4\]"):
        controller.update(first, [0.1, 0.2])
    controller.update(first + second, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert controller.round == 1 and controller.pending() == []


def test_update_checks_its_arguments() -> None:
    controller = ReinforceController(seed=0)
    with pytest.raises(ValueError, match="round 0 has no pending proposals: call propose"):
        controller.update([], [])
    proposals = controller.propose(2)
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        controller.update(proposals, [0.5])
    with pytest.raises(ValueError, match="reward of proposal 1 must be finite, got inf"):
        controller.update(proposals, [0.5, math.inf])
    with pytest.raises(ValueError, match="reward of proposal 0 must be a number or None, got 'high'"):
        controller.update(proposals, ["high", 0.5])  # type: ignore[list-item]
    assert proposals[0].hyperparameters["lr"] != 5e-3
    forged = proposals[0].model_copy(update={"hyperparameters": {**proposals[0].hyperparameters, "lr": 5e-3}})
    with pytest.raises(ValueError, match="is not a pending proposal of round 0"):
        controller.update([forged, proposals[1]], [0.5, 0.5])
    with pytest.raises(ValueError, match="given more than once"):
        controller.update([proposals[0], proposals[0]], [0.5, 0.5])
    controller.update(proposals, [0.5, 0.6])
    controller.propose(2)
    with pytest.raises(ValueError, match=r"\(round 0\) is not a pending proposal of round 1"):
        controller.update(proposals, [0.5, 0.6])


@pytest.mark.parametrize("m", [0, -1, 2.0, True, "8"])
def test_propose_checks_m(m: Any) -> None:
    with pytest.raises(ValueError, match="m must be a positive integer"):
        ReinforceController(seed=0).propose(m)


def test_config_and_options() -> None:
    config = ControllerConfig(seed=7, lr=0.01, hidden_size=16)
    controller = ReinforceController(None, config)
    assert controller.config == config and controller.search_space == default_search_space()
    assert controller.policy.cell.hidden_size == 16
    with pytest.raises(TypeError, match="either config or keyword options"):
        ReinforceController(None, config, seed=1)
    with pytest.raises(ValueError, match="baseline_decay"):
        ReinforceController(baseline_decay=1.0)
    spaced = ReinforceController({"opt": {"type": "categorical", "choices": ["a", "b"]}}, seed=0)
    assert isinstance(spaced.search_space["opt"], Categorical)
