"""REINFORCE controller for hyper-parameter search (the paper's AutoML, after Yang et al., MICCAI 2019).

An LSTM policy emits one hyper-parameter after another; each step's input embeds the previous decision,
so later choices are conditioned on earlier ones (e.g. the optimiser on the learning rate):

- a categorical hyper-parameter is a softmax over its choices;
- a continuous one is a Kumaraswamy(a, b) distribution on [0, 1] with ``a, b >= 1``, mapped onto
  ``[low, high]`` linearly (:class:`Uniform`) or on a log scale (:class:`LogUniform`).

Why Kumaraswamy: it has the shapes of a Beta distribution (uniform at ``a = b = 1``, unimodal peaks
anywhere in the interval, including at either end) but a closed-form inverse CDF, so samples are drawn
by inverse transform from the controller's own ``torch.Generator`` (torch's Beta sampler draws Gamma
variates from the global generator and takes none), and a closed-form entropy that is largest for the
uniform, so the entropy bonus spreads mass over the range. A squashed Gaussian would also be bounded,
but its tractable (pre-squash) entropy grows without bound as mass piles up at both ends of the
range. Keeping ``a, b >= 1`` keeps the density bounded, so log-probabilities stay finite.

Training: after the trials of a round, the controller is updated with REINFORCE,
``loss = -mean((reward - baseline) * log_prob) - entropy_weight * mean(entropy)``, reward = validation
Dice (or, when the search stops trials early, the trial's rank in its round: see
:mod:`proxyhpo.controller.rewards`), baseline = exponential moving average of the rounds' mean rewards,
one Adam step per round. Failed trials (reward ``None`` or NaN) are recorded and left out of the gradient.

Everything random comes from generators owned by the controller and persisted with it: same seed and
same rewards give the same proposals, in one process or across :meth:`ReinforceController.save` /
:meth:`ReinforceController.load`. The policy runs in float64 on the CPU; bit-identical continuation
across machines assumes the same torch build and CPU kind (floating-point kernels may differ otherwise).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from proxyhpo.config.base import brief
from proxyhpo.config.controller import ControllerConfig, ControllerState, HistoryRecord, Proposal, UpdateStats
from proxyhpo.config.search_space import Categorical, Choice, SearchSpace, default_search_space
from proxyhpo.controller.state import read_state, write_state
from proxyhpo.errors import InputError

__all__ = ["ReinforceController", "ControllerPolicy", "kumaraswamy_log_prob", "kumaraswamy_entropy", "kumaraswamy_icdf"]

_DTYPE = torch.float64  # a tiny network: double precision costs nothing and keeps replayed log-probs exact
_EDGE = 1e-7  # unit-interval samples are kept this far from 0 and 1 (finite log-densities)
_INIT_RAW = -3.0  # 1 + softplus(-3) = 1.049: the initial Kumaraswamy is nearly uniform
_EULER_GAMMA = 0.5772156649015329


def kumaraswamy_log_prob(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Log-density of Kumaraswamy(a, b) at ``x`` in (0, 1): ``log(ab) + (a-1)log x + (b-1)log(1 - x^a)``.

    Args:
        x, a, b: tensors of one shape (M,); ``a, b > 0``.

    Returns:
        (M,) log-densities.
    """
    log_x = torch.log(x)
    return torch.log(a) + torch.log(b) + (a - 1) * log_x + (b - 1) * torch.log1p(-torch.exp(a * log_x))


def kumaraswamy_entropy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Differential entropy of Kumaraswamy(a, b): ``(1 - 1/b) + (1 - 1/a) H_b - log(ab)``, with ``H_b`` the b-th harmonic number.

    It is 0 for the uniform (``a = b = 1``) and negative for every other shape with ``a, b >= 1``.
    """
    harmonic = torch.digamma(b + 1) + _EULER_GAMMA
    return (1 - 1 / b) + (1 - 1 / a) * harmonic - torch.log(a) - torch.log(b)


def kumaraswamy_icdf(u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of Kumaraswamy(a, b): ``(1 - (1 - u)^(1/b))^(1/a)``, computed in log space.

    Args:
        u: (M,) uniform variates in [0, 1).
        a, b: (M,) concentrations.

    Returns:
        (M,) samples in [0, 1].
    """
    inner = -torch.expm1(torch.log1p(-u) / b)  # 1 - (1 - u)^(1/b), accurate for small u
    return torch.exp(torch.log(inner) / a)


class ControllerPolicy(nn.Module):
    """The LSTM policy: one step per hyper-parameter, in the search space's order.

    Step ``k`` feeds the embedding of decision ``k - 1`` (a learned start vector at ``k = 0``) to an
    ``LSTMCell``; a per-hyper-parameter linear head turns the hidden state into the logits of a
    categorical distribution or the two concentrations of a Kumaraswamy distribution. Heads start at
    zero, so the initial policy is (nearly) uniform over the search space: round 0 is a random search.

    Decisions are encoded as a (M, K) double tensor: a choice's index for categorical hyper-parameters,
    the value mapped onto [0, 1] for continuous ones.

    Args:
        search_space: the hyper-parameters, K of them.
        hidden_size: width of the LSTM and the embeddings.
    """

    def __init__(self, search_space: SearchSpace, hidden_size: int = 64) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        self.search_space = search_space
        self.hidden_size = hidden_size
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        embeddings: list[nn.Module] = []
        heads: list[nn.Linear] = []
        for _, dist in search_space.items():
            if isinstance(dist, Categorical):
                embeddings.append(nn.Embedding(dist.size, hidden_size))
                heads.append(nn.Linear(hidden_size, dist.size))
            else:
                embeddings.append(nn.Linear(1, hidden_size))
                heads.append(nn.Linear(hidden_size, 2))
        self.embeddings = nn.ModuleList(embeddings)
        self.heads = nn.ModuleList(heads)
        self.to(_DTYPE)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every weight from ``generator`` (the global RNG is never touched).

        LSTM, embeddings and start vector: uniform in ``±1/sqrt(hidden_size)`` (PyTorch's LSTM default);
        heads: zero weights, zero logits and near-uniform Kumaraswamy concentrations.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for module in (self.cell, self.embeddings):
            for p in module.parameters():
                p.uniform_(-bound, bound, generator=generator)
        self.start.uniform_(-bound, bound, generator=generator)
        for head, (_, dist) in zip(self.heads, self.search_space.items(), strict=True):
            assert isinstance(head, nn.Linear)
            head.weight.zero_()
            head.bias.fill_(0.0 if isinstance(dist, Categorical) else _INIT_RAW)

    def forward(
        self, m: int, actions: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Sample M decision sequences (``actions=None``) or score given ones (teacher forcing).

        Args:
            m: number of sequences M.
            actions: (M, K) encoded decisions to score, or None to sample.
            generator: source of randomness when sampling.

        Returns:
            ``(actions, log_prob, entropy, probs)``: (M, K) encoded decisions; (M,) log-probability of
            each sequence; (M,) entropy of each step's distribution summed over the steps; and, per
            categorical step, the (M, n_choices) probabilities.
        """
        sampling = actions is None
        if sampling and generator is None:
            raise ValueError("generator is required when sampling (actions=None)")
        items = self.search_space.items()
        h = torch.zeros(m, self.hidden_size, dtype=_DTYPE)
        c = torch.zeros_like(h)
        inp = self.start.expand(m, -1)
        chosen: list[torch.Tensor] = []
        log_prob = torch.zeros(m, dtype=_DTYPE)
        entropy = torch.zeros(m, dtype=_DTYPE)
        probs: list[torch.Tensor] = []
        for k, (_, dist) in enumerate(items):
            h, c = self.cell(inp, (h, c))
            out = self.heads[k](h)
            if isinstance(dist, Categorical):
                log_p = F.log_softmax(out, dim=-1)
                p = log_p.exp()
                if sampling:
                    index = torch.multinomial(p.detach(), 1, generator=generator).squeeze(1)
                else:
                    index = actions[:, k].round().long()  # type: ignore[index]
                log_prob = log_prob + log_p.gather(1, index[:, None]).squeeze(1)
                entropy = entropy - (p * log_p).sum(-1)
                probs.append(p)
                chosen.append(index.to(_DTYPE))
                inp = self.embeddings[k](index)
            else:
                a = 1.0 + F.softplus(out[:, 0])
                b = 1.0 + F.softplus(out[:, 1])
                if sampling:
                    u = torch.rand(m, generator=generator, dtype=_DTYPE)
                    x = kumaraswamy_icdf(u, a.detach(), b.detach())
                else:
                    x = actions[:, k]  # type: ignore[index]
                x = x.clamp(_EDGE, 1.0 - _EDGE)
                log_prob = log_prob + kumaraswamy_log_prob(x, a, b)
                entropy = entropy + kumaraswamy_entropy(a, b)
                chosen.append(x)
                inp = self.embeddings[k](2.0 * x[:, None] - 1.0)
        return torch.stack(chosen, dim=1), log_prob, entropy, probs


class ReinforceController:
    """Proposes hyper-parameters in rounds and learns from their validation Dice with REINFORCE.

    Args:
        search_space: what to search; :func:`~proxyhpo.config.default_search_space` when None (lr,
            optimizer, intensity_shift_prob: the paper searches lr and intensity_shift_prob; the optimiser is ours).
            A mapping is validated as a :class:`SearchSpace`.
        config: the settings; or give them as keyword ``options`` (``seed=3, lr=0.02``), not both.

    Raises:
        TypeError: when both ``config`` and keyword options are given.
        pydantic.ValidationError: for invalid options or search space.

    Example:
        >>> controller = ReinforceController(seed=0)
        >>> proposals = controller.propose(4)
        >>> stats = controller.update(proposals, [0.71, 0.65, None, 0.80])  # None: a failed trial
        >>> controller.save("controller.zip")  # doctest: +SKIP
        >>> controller = ReinforceController.load("controller.zip")  # doctest: +SKIP
    """

    def __init__(
        self,
        search_space: SearchSpace | Mapping[str, Any] | None = None,
        config: ControllerConfig | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError(f"give either config or keyword options, not both (got options {sorted(options)})")
        if search_space is None:
            search_space = default_search_space()
        elif not isinstance(search_space, SearchSpace):
            search_space = SearchSpace.model_validate(search_space)
        self._config = config if config is not None else ControllerConfig(**options)
        self._space = search_space
        init_generator = torch.Generator().manual_seed(self._config.seed)
        # torch's layers draw their default initialisation from the global generator: fork it so that
        # building a controller leaves the caller's random stream untouched (weights come from ours)
        with torch.random.fork_rng(devices=[]):
            self._policy = ControllerPolicy(search_space, self._config.hidden_size)
        self._policy.reset_parameters(init_generator)
        self._optimizer = torch.optim.Adam(self._policy.parameters(), lr=self._config.lr)
        # a separate stream from the initialisation one, so sampling does not depend on the network's size
        self._generator = torch.Generator().manual_seed(self._config.seed + 1)
        self._round = 0
        self._next_id = 0
        self._baseline: float | None = None
        self._pending: dict[int, Proposal] = {}
        self._history: list[HistoryRecord] = []
        self._updates: list[UpdateStats] = []

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> ControllerConfig:
        """The controller's settings."""
        return self._config

    @property
    def search_space(self) -> SearchSpace:
        """The hyper-parameters searched, in emission order."""
        return self._space

    @property
    def round(self) -> int:
        """The round the next proposals belong to (= number of finished updates)."""
        return self._round

    @property
    def baseline(self) -> float | None:
        """The moving-average reward baseline (None before the first successful round)."""
        return self._baseline

    @property
    def policy(self) -> ControllerPolicy:
        """The LSTM policy (read it, do not train it outside :meth:`update`)."""
        return self._policy

    # ------------------------------------------------------------------ search
    def propose(self, m: int) -> list[Proposal]:
        """Sample ``m`` proposals for the current round.

        Calling it again before :meth:`update` adds more proposals to the same round.

        Args:
            m: number of proposals M (>= 1).

        Returns:
            M proposals with consecutive ids; their ``hyperparameters`` hold one value per hyper-parameter.

        Raises:
            ValueError: when ``m`` is not a positive integer.
        """
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"m must be a positive integer, got {m!r}")
        with torch.no_grad():
            actions, log_prob, _, _ = self._policy(m, generator=self._generator)
        proposals = []
        for i in range(m):
            proposal = Proposal(
                proposal_id=self._next_id,
                round=self._round,
                hyperparameters=self._decode(actions[i]),
                log_prob=float(log_prob[i]),
            )
            self._next_id += 1
            self._pending[proposal.proposal_id] = proposal
            proposals.append(proposal)
        return proposals

    def update(
        self,
        proposals: Sequence[Proposal],
        rewards: Sequence[float | None],
        *,
        dice: Sequence[float | None] | None = None,
        stopped_at_epoch: Sequence[int | None] | None = None,
    ) -> UpdateStats:
        """Learn from the rewards of the current round's proposals and start the next round.

        Args:
            proposals: every pending proposal of the current round, in any order.
            rewards: their rewards, same order (their validation Dice, or their ranks: see
                :mod:`proxyhpo.controller.rewards`); ``None`` or NaN marks a failed trial, which is
                recorded in the history (``failed=True``) and left out of the gradient. When every
                trial failed, no optimiser step is taken, but the round still ends.
            dice: their validation Dice, same order, recorded in the history (what :meth:`best` ranks by);
                default: the rewards.
            stopped_at_epoch: the epoch at which early stopping stopped each trial (None: trained to the
                end), same order, recorded in the history.

        Returns:
            the statistics of the update (also kept, see :meth:`update_stats`).

        Raises:
            ValueError: when the lengths differ, a proposal is not pending in this round, a pending
                proposal has no reward, or a reward is infinite or not a number.
        """
        if len(proposals) != len(rewards):
            raise ValueError(f"proposals and rewards must have the same length, got {len(proposals)} and {len(rewards)}")
        for name, extra in (("dice", dice), ("stopped_at_epoch", stopped_at_epoch)):
            if extra is not None and len(extra) != len(proposals):
                raise ValueError(f"proposals and {name} must have the same length, got {len(proposals)} and {len(extra)}")
        outcome = {
            proposal.proposal_id: (
                dice[k] if dice is not None else rewards[k],
                stopped_at_epoch[k] if stopped_at_epoch is not None else None,
            )
            for k, proposal in enumerate(proposals)
        }
        if not self._pending:
            raise ValueError(f"round {self._round} has no pending proposals: call propose() before update()")
        paired: dict[int, float | None] = {}
        for proposal, reward in zip(proposals, rewards, strict=True):
            pending = self._pending.get(proposal.proposal_id)
            if pending is None or pending != proposal:
                raise ValueError(
                    f"proposals[{proposal.proposal_id}] (round {proposal.round}) is not a pending proposal of round {self._round}"
                )
            if proposal.proposal_id in paired:
                raise ValueError(f"proposal {proposal.proposal_id} is given more than once")
            paired[proposal.proposal_id] = self._check_reward(proposal.proposal_id, reward)
        missing = sorted(set(self._pending) - set(paired))
        if missing:
            raise ValueError(f"rewards are missing for pending proposals {missing} of round {self._round}: pass None for failed trials")

        # proposal-id order makes the update independent of the order the caller passes the trials in
        ordered = [(self._pending[i], paired[i]) for i in sorted(paired)]
        valid: list[tuple[Proposal, float]] = [(p, r) for p, r in ordered if r is not None]
        n_failed = len(ordered) - len(valid)
        stats: UpdateStats
        if not valid:
            stats = UpdateStats(round=self._round, n_proposals=len(ordered), n_failed=n_failed, stepped=False, baseline=self._baseline)
        else:
            stats = self._step(valid, n_proposals=len(ordered), n_failed=n_failed)
        self._history.extend(
            HistoryRecord(
                proposal=p,
                reward=r,
                failed=r is None,
                dice=self._check_reward(p.proposal_id, outcome[p.proposal_id][0]) if r is not None else None,
                stopped_at_epoch=outcome[p.proposal_id][1] if r is not None else None,
            )
            for p, r in ordered
        )
        self._updates.append(stats)
        self._pending.clear()
        self._round += 1
        return stats

    def reward_spread(self, rewards: Sequence[float]) -> float:
        """The running spread advantages are divided by (``advantage: normalized``, ours): the standard deviation
        of every reward told so far, this round's ``rewards`` included (0 while they are all equal).

        Read from the history, so a restored controller has it without a new field in its archive.
        """
        seen = [record.reward for record in self._history if record.reward is not None] + list(rewards)
        return float(torch.tensor(seen, dtype=_DTYPE).std(unbiased=False)) if len(seen) > 1 else 0.0

    def _step(self, valid: list[tuple[Proposal, float]], n_proposals: int, n_failed: int) -> UpdateStats:
        rewards = torch.tensor([r for _, r in valid], dtype=_DTYPE)
        mean_reward = float(rewards.mean())
        baseline_before = self._baseline if self._baseline is not None else mean_reward
        advantage = rewards - baseline_before
        if self._config.advantage == "normalized":
            # ours: Adam's step hardly depends on the loss's scale, but the sign pattern of small noisy advantages
            # does; dividing by the spread makes a reward one spread above the baseline count the same at any scale
            spread = self.reward_spread([r for _, r in valid])
            advantage = advantage / spread if spread > 1e-12 else torch.zeros_like(advantage)
        actions = torch.stack([self._encode(p.hyperparameters) for p, _ in valid])
        max_norm = self._config.max_grad_norm if self._config.max_grad_norm is not None else math.inf
        first: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float] | None = None
        # ours when > 1: several steps on the round's samples (a study has few rounds); the paper takes one
        for _ in range(self._config.updates_per_round):
            _, log_prob, entropy, _ = self._policy(len(valid), actions=actions)
            policy_loss = -(advantage * log_prob).mean()
            mean_entropy = entropy.mean()
            bonus = self._config.entropy_weight * mean_entropy
            loss = policy_loss - bonus
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self._policy.parameters(), max_norm))
            self._optimizer.step()
            if first is None:
                first = (policy_loss, mean_entropy, bonus, loss, grad_norm)
        assert first is not None
        policy_loss, mean_entropy, bonus, loss, grad_norm = first
        decay = self._config.baseline_decay
        self._baseline = decay * baseline_before + (1.0 - decay) * mean_reward
        return UpdateStats(
            round=self._round,
            n_proposals=n_proposals,
            n_failed=n_failed,
            stepped=True,
            mean_reward=mean_reward,
            baseline_before=baseline_before,
            baseline=self._baseline,
            policy_loss=float(policy_loss.detach()),
            entropy=float(mean_entropy.detach()),
            entropy_bonus=float(bonus.detach()),
            loss=float(loss.detach()),
            grad_norm=grad_norm,
        )

    @staticmethod
    def _check_reward(proposal_id: int, reward: float | None) -> float | None:
        if reward is None:
            return None
        try:
            value = float(reward)
        except (TypeError, ValueError):
            raise ValueError(f"reward of proposal {proposal_id} must be a number or None, got {reward!r}") from None
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise ValueError(f"reward of proposal {proposal_id} must be finite, got {value}: pass None for a failed trial")
        return value

    # ------------------------------------------------------------------ encoding
    def _decode(self, row: torch.Tensor) -> dict[str, Choice]:
        values: dict[str, Choice] = {}
        for k, (name, dist) in enumerate(self._space.items()):
            if isinstance(dist, Categorical):
                values[name] = dist.choices[int(row[k])]
            else:
                values[name] = dist.from_unit(float(row[k]))
        return values

    def _encode(self, values: Mapping[str, Choice]) -> torch.Tensor:
        codes = []
        for name, dist in self._space.items():
            if isinstance(dist, Categorical):
                codes.append(float(dist.index(values[name])))
            else:
                codes.append(dist.to_unit(float(values[name])))  # type: ignore[arg-type]
        return torch.tensor(codes, dtype=_DTYPE)

    # ------------------------------------------------------------------ reading
    def pending(self) -> list[Proposal]:
        """Proposals of the current round still waiting for their rewards."""
        return list(self._pending.values())

    def history(self) -> list[HistoryRecord]:
        """Every finished proposal with its reward (``failed`` when it had none), in order of proposal id."""
        return list(self._history)

    def update_stats(self) -> list[UpdateStats]:
        """The statistics of every update so far, one per round."""
        return list(self._updates)

    def best(self) -> tuple[Proposal, float] | None:
        """The best proposal so far and its Dice (see :meth:`ControllerState.best`), or None if none succeeded."""
        record = self.state().best()
        return None if record is None else (record.proposal, record.score)  # type: ignore[return-value]

    def choice_probabilities(self, name: str, samples: int = 256) -> dict[Choice, float]:
        """Marginal probability the policy gives each choice of a categorical hyper-parameter.

        Earlier decisions are drawn from the policy (``samples`` rollouts, from a private generator
        seeded with the config's seed, so the controller's own stream is not advanced) and the
        probabilities of the step are averaged over them.

        Args:
            name: a categorical hyper-parameter of the search space.
            samples: number of rollouts.

        Raises:
            ValueError: when ``name`` is not a categorical hyper-parameter, or ``samples`` < 1.
        """
        if name not in self._space or not isinstance(self._space[name], Categorical):
            categorical = [n for n, d in self._space.items() if isinstance(d, Categorical)]
            raise ValueError(f"name must be a categorical hyper-parameter, one of {categorical}, got {name!r}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        position = [n for n, d in self._space.items() if isinstance(d, Categorical)].index(name)
        generator = torch.Generator().manual_seed(self._config.seed)
        with torch.no_grad():
            _, _, _, probs = self._policy(samples, generator=generator)
        mean = probs[position].mean(dim=0)
        dist = self._space[name]
        assert isinstance(dist, Categorical)
        return {choice: float(mean[i]) for i, choice in enumerate(dist.choices)}

    # ------------------------------------------------------------------ persistence
    def state(self) -> ControllerState:
        """The JSON part of the controller's state (see :mod:`proxyhpo.controller.state`)."""
        return ControllerState(
            config=self._config,
            search_space=self._space,
            round=self._round,
            next_proposal_id=self._next_id,
            baseline=self._baseline,
            pending=tuple(self._pending.values()),
            history=tuple(self._history),
            updates=tuple(self._updates),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole state (weights, optimiser, baseline, RNG, round, history) to one file, atomically.

        Returns:
            the path written.

        Raises:
            StorageError: when the file cannot be written.
        """
        tensors = {
            "policy": self._policy.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "generator": self._generator.get_state(),
        }
        return write_state(path, self.state(), tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReinforceController:
        """Restore a controller saved by :meth:`save`; its next round continues exactly as it would have in the saver.

        Raises:
            StorageError: when the file does not exist.
            InputError: when it is corrupt, of another schema version, or its tensors do not fit its search space.
        """
        state, tensors = read_state(path)
        controller = cls(state.search_space, state.config)
        try:
            controller._policy.load_state_dict(tensors["policy"])
            controller._optimizer.load_state_dict(tensors["optimizer"])
            controller._generator.set_state(tensors["generator"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            problem = f"its tensors do not match its search space and config ({brief(exc)})"
            raise InputError(path, problem, "the file is corrupt; rerun the round that wrote it") from exc
        controller._round = state.round
        controller._next_id = state.next_proposal_id
        controller._baseline = state.baseline
        controller._pending = {p.proposal_id: p for p in state.pending}
        controller._history = list(state.history)
        controller._updates = list(state.updates)
        return controller
