"""ENAS-style NAS controller: an LSTM that emits a child architecture one decision at a time (the paper's section 2.2).

The controller knows nothing about networks. It is given the search space's decisions, in order, as
``(kind, option_count)`` pairs (``("dilation", 3)``, ``("skip", 2)``, ...) and returns architectures as
tuples of option indices, one per decision.

Policy: step ``t`` feeds an ``LSTMCell`` the sum of two embeddings,

- what was chosen at step ``t - 1``: one embedding row per option of every decision (an option of one
  decision never shares a row with an option of another), or a learned start vector at ``t = 0``;
- the **kind** of decision made at step ``t``: one learned vector per distinct kind. This is the
  paper's "we distinguish distinct operations by adding unique values to the LSTM inputs": the LSTM is
  told whether it is choosing a patch size, a pooling stride or an activation.

A linear head per decision turns the hidden state into logits over that decision's options. Heads start
at zero, so the first episode samples uniformly. A decision with one option takes no head and no random
draw: its option is 0 with probability 1 and entropy 0.

Training, once per episode (the paper: 20 children, each rewarded by its validation Dice):
``loss = -mean_ok((R - b) * log p(child)) - entropy_weight * mean_all(H(child))``, one step of
``Adam(lr, weight_decay)`` (PyTorch's coupled L2 decay, as in the paper's PyTorch 1.0). ``b`` is the
moving-average baseline: the first successful episode's mean reward, then
``b <- d * b + (1 - d) * mean_ok(R)``, updated after the step. ``H(child)`` is the entropy of each
step's distribution summed along the child's path (by the chain rule its mean over sampled children
estimates the entropy of the whole architecture distribution without bias).

Failed children (reward ``None`` or NaN) say nothing about the architecture (a crash, a lost pod): they
are counted (``EpisodeStats.n_failed``), left out of the policy-gradient term and of the baseline, and
still enter the entropy term, which does not depend on rewards. When every child failed no step is
taken and the baseline is left alone, but the episode still counts. To punish an architecture that
cannot be trained (out of GPU memory), pass a low reward such as 0.0 instead of ``None``.

Everything random comes from generators owned by the controller and persisted with it: the same seed and
the same rewards give the same children, in one process or across :meth:`EnasController.save` /
:meth:`EnasController.load`. The policy runs in float64 on the CPU; bit-identical continuation across
machines assumes the same torch build and CPU kind.

State file: one zip, ``nas_controller.json`` (a :class:`~proxyhpo.config.nas_controller.NasControllerState`:
settings, decisions, episode counter, baseline, history; plain JSON) and ``tensors.pt`` (the policy's and
Adam's ``state_dict`` and the generator's state, loaded with ``weights_only=True``). Zip entries carry a
fixed timestamp, so equal states give byte-identical files. It is written atomically.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from proxyhpo.config.base import brief
from proxyhpo.config.nas_controller import NAS_SCHEMA_VERSION, EpisodeStats, NasControllerConfig, NasControllerState
from proxyhpo.controller.state import HPO_STATE, StateLayout, read_archive, write_state
from proxyhpo.errors import InputError

__all__ = ["EnasController", "EnasPolicy", "episode_fractions"]

_DTYPE = torch.float64  # a tiny network: double precision costs nothing and keeps replayed log-probs exact
_JSON_ENTRY = "nas_controller.json"
_FIX_CORRUPT = "the file is corrupt; rerun the episode that wrote it"
_NAS_STATE = StateLayout(
    what="NAS controller state",
    json_entry=_JSON_ENTRY,
    model=NasControllerState,
    schema_version=NAS_SCHEMA_VERSION,
    fix_missing="pass the state written by the previous episode",
    fix_not_state="pass a file written by EnasController.save",
    fix_corrupt=_FIX_CORRUPT,
    fix_version="use the proxyhpo version that wrote it, or start a new search",
    # an HPO controller's file holds tensors.pt too: say which file it is, not that an entry is missing
    foreign={HPO_STATE.json_entry: ("an HPO controller state", "load it with ReinforceController.load, or pass a file written by EnasController.save")},
)

Architecture = tuple[int, ...]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the policy on one CPU thread, then restore the caller's thread count.

    The policy's operations are a few 64-wide matrices: intra-op threads only add synchronisation,
    which on a busy or CPU-limited machine (a pod whose limit is below the cores torch sees) made an
    update 50x slower (390 ms against 7 ms, measured on 2 shared cores). One thread also keeps the
    arithmetic, hence continuation after :meth:`EnasController.load`, independent of the machine's core
    count. ``torch.set_num_threads`` is process-wide: torch work in other threads during these few
    milliseconds runs on one thread too.
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_decisions(decisions: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    if isinstance(decisions, (str, bytes)) or not isinstance(decisions, Sequence):
        raise ValueError(f"decisions must be a sequence of (kind, option_count) pairs, got {brief(decisions)}")
    if not decisions:
        raise ValueError("decisions must not be empty: give one (kind, option_count) pair per decision of the search space")
    checked = []
    for t, pair in enumerate(decisions):
        if not isinstance(pair, Sequence) or isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise ValueError(f"decisions[{t}] must be a (kind, option_count) pair, got {brief(pair)}")
        kind, count = pair
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"decisions[{t}] kind must be a non-empty string, got {kind!r}")
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise ValueError(f"decisions[{t}] ({kind!r}) option_count must be an integer >= 1, got {count!r}")
        checked.append((kind, int(count)))
    return tuple(checked)


def episode_fractions(samples: Sequence[Architecture], most_likely: Architecture) -> tuple[float, float]:
    """The episode's convergence measures: ``(same_as_most_likely, mode_fraction)``.

    Args:
        samples: the episode's children (at least one).
        most_likely: the controller's greedy architecture.

    Returns:
        the fraction of ``samples`` equal to ``most_likely``, and the fraction equal to the most
        frequent of ``samples``.

    Example:
        >>> episode_fractions([(0, 1), (0, 1), (2, 0), (1, 1)], (1, 1))
        (0.25, 0.5)
    """
    counts = Counter(tuple(s) for s in samples)
    n = len(samples)
    return counts.get(tuple(most_likely), 0) / n, max(counts.values()) / n


class EnasPolicy(nn.Module):
    """The controller's LSTM: one step per decision, input = previous choice's embedding + this step's kind vector.

    Architectures are encoded as a (M, K) long tensor of option indices, K = number of decisions.

    Args:
        decisions: ``(kind, option_count)`` per decision, in emission order.
        hidden_size: width of the LSTM and of the embeddings.
    """

    def __init__(self, decisions: Sequence[tuple[str, int]], hidden_size: int = 64) -> None:
        super().__init__()
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"hidden_size must be an integer >= 1, got {hidden_size!r}")
        self.decisions = _check_decisions(decisions)
        self.hidden_size = hidden_size
        kinds = list(dict.fromkeys(kind for kind, _ in self.decisions))
        self.kinds = tuple(kinds)
        self.kind_of_step = [kinds.index(kind) for kind, _ in self.decisions]
        self.option_counts = [count for _, count in self.decisions]
        self.offsets = [sum(self.option_counts[:t]) for t in range(len(self.decisions))]
        self.head_of_step: list[int | None] = []
        heads = []
        for count in self.option_counts:
            self.head_of_step.append(len(heads) if count > 1 else None)
            if count > 1:
                heads.append(nn.Linear(hidden_size, count))
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.option_embedding = nn.Embedding(sum(self.option_counts), hidden_size)
        self.kind_embedding = nn.Embedding(len(kinds), hidden_size)
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.ModuleList(heads)
        self.to(_DTYPE)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise every weight from ``generator`` (the global RNG is never touched).

        LSTM, embeddings and start vector: uniform in ``±1/sqrt(hidden_size)`` (PyTorch's LSTM default),
        so every kind gets its own random vector from the start; heads: zero, a uniform first policy.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for module in (self.cell, self.option_embedding, self.kind_embedding):
            for p in module.parameters():
                p.uniform_(-bound, bound, generator=generator)
        self.start.uniform_(-bound, bound, generator=generator)
        for p in self.heads.parameters():
            p.zero_()

    def forward(
        self, m: int, actions: torch.Tensor | None = None, generator: torch.Generator | None = None, greedy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample M architectures, decode the greedy one, or score given ones (teacher forcing).

        Args:
            m: number of architectures M.
            actions: (M, K) option indices to score; None to sample (or decode, with ``greedy``).
            generator: source of randomness when sampling.
            greedy: take each step's most probable option (the lowest index on ties) instead of sampling.

        Returns:
            ``(actions, log_prob, entropy)``: (M, K) option indices; (M,) log-probability of each
            architecture; (M,) entropy of each step's distribution summed along the architecture's path.
        """
        choosing = actions is None
        if choosing and not greedy and generator is None:
            raise ValueError("generator is required when sampling (actions=None, greedy=False)")
        h = torch.zeros(m, self.hidden_size, dtype=_DTYPE)
        c = torch.zeros_like(h)
        previous = self.start.expand(m, -1)
        chosen: list[torch.Tensor] = []
        log_prob = torch.zeros(m, dtype=_DTYPE)
        entropy = torch.zeros(m, dtype=_DTYPE)
        for t, count in enumerate(self.option_counts):
            inp = previous + self.kind_embedding.weight[self.kind_of_step[t]]
            h, c = self.cell(inp, (h, c))
            head = self.head_of_step[t]
            if head is None:  # one option: probability 1, entropy 0, nothing drawn
                index = torch.zeros(m, dtype=torch.long)
            else:
                log_p = F.log_softmax(self.heads[head](h), dim=-1)
                p = log_p.exp()
                if not choosing:
                    index = actions[:, t]  # type: ignore[index]
                elif greedy:
                    index = p.detach().argmax(dim=-1)
                else:
                    index = torch.multinomial(p.detach(), 1, generator=generator).squeeze(1)
                log_prob = log_prob + log_p.gather(1, index[:, None]).squeeze(1)
                entropy = entropy - (p * log_p).sum(-1)
            chosen.append(index)
            previous = self.option_embedding(index + self.offsets[t])
        return torch.stack(chosen, dim=1), log_prob, entropy


class EnasController:
    """Samples child architectures in episodes and learns from their validation Dice with REINFORCE.

    Args:
        decisions: the search space's decisions in emission order, as ``(kind, option_count)`` pairs
            (e.g. ``[(d.kind, len(d.options)) for d in space.decisions]``).
        config: the settings; the paper's when None.

    Raises:
        ValueError: when ``decisions`` is empty or a pair is malformed (the message names its position).

    Example:
        >>> controller = EnasController([("patch_size", 5), ("pool_stride", 3), ("activation", 3)])
        >>> children = controller.sample(20)
        >>> stats = controller.update(children, [0.7] * 19 + [None])  # None: a child that failed
        >>> final = controller.most_likely()  # the search's answer, once the episodes are done
        >>> controller.save("nas_controller.zip")  # doctest: +SKIP
        >>> controller = EnasController.load("nas_controller.zip")  # doctest: +SKIP
    """

    def __init__(self, decisions: Sequence[tuple[str, int]], config: NasControllerConfig | None = None) -> None:
        if config is not None and not isinstance(config, NasControllerConfig):
            raise TypeError(f"config must be a NasControllerConfig or None, got {type(config).__name__}")
        self._config = config if config is not None else NasControllerConfig()
        self._decisions = _check_decisions(decisions)
        init_generator = torch.Generator().manual_seed(self._config.seed)
        # torch's layers draw their default initialisation from the global generator: fork it so that
        # building a controller leaves the caller's random stream untouched (weights come from ours)
        with torch.random.fork_rng(devices=[]):
            self._policy = EnasPolicy(self._decisions, self._config.hidden_size)
        self._policy.reset_parameters(init_generator)
        self._optimizer = torch.optim.Adam(self._policy.parameters(), lr=self._config.lr, weight_decay=self._config.weight_decay)
        # a separate stream from the initialisation one, so sampling does not depend on the network's size
        self._generator = torch.Generator().manual_seed(self._config.seed + 1)
        self._episode = 0
        self._baseline: float | None = None
        self._history: list[EpisodeStats] = []

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> NasControllerConfig:
        """The controller's settings."""
        return self._config

    @property
    def decisions(self) -> tuple[tuple[str, int], ...]:
        """The decisions searched, in emission order, as ``(kind, option_count)`` pairs."""
        return self._decisions

    @property
    def episode(self) -> int:
        """The number of finished episodes (the next episode's number)."""
        return self._episode

    @property
    def baseline(self) -> float | None:
        """The moving-average reward baseline (None before the first successful episode)."""
        return self._baseline

    @property
    def history(self) -> list[EpisodeStats]:
        """One record per finished episode, in order (a copy)."""
        return list(self._history)

    @property
    def policy(self) -> EnasPolicy:
        """The LSTM policy (read it, do not train it outside :meth:`update`)."""
        return self._policy

    # ------------------------------------------------------------------ search
    def sample(self, n: int) -> list[Architecture]:
        """Sample ``n`` child architectures from the policy (advances the controller's generator).

        Args:
            n: number of children (>= 1; the paper samples 20 per episode).

        Returns:
            n tuples of K option indices, ``0 <= index < option_count`` of each decision.

        Raises:
            ValueError: when ``n`` is not a positive integer.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        with torch.no_grad(), _one_thread():
            actions, _, _ = self._policy(n, generator=self._generator)
        return [tuple(int(i) for i in row) for row in actions.tolist()]

    def most_likely(self) -> Architecture:
        """The greedy architecture: each step takes its most probable option given the earlier greedy ones.

        This is the search's final architecture. Ties go to the lowest index, so the untrained
        controller returns all zeros. The generator is not advanced.
        """
        with torch.no_grad(), _one_thread():
            actions, _, _ = self._policy(1, greedy=True)
        return tuple(int(i) for i in actions[0].tolist())

    def entropy(self) -> float:
        """The policy's entropy along the greedy path, in nats.

        The sum over decisions of the entropy of each step's distribution, with the LSTM fed the
        greedy (:meth:`most_likely`) choices. Deterministic and free of sampling noise, and 0 for
        decisions with one option; it tends to 0 as the controller settles on one architecture. (Each
        :class:`EpisodeStats` also records the entropy averaged over that episode's sampled paths,
        which estimates the entropy of the whole architecture distribution.)
        """
        with torch.no_grad(), _one_thread():
            _, _, entropy = self._policy(1, greedy=True)
        return float(entropy[0])

    def update(self, samples: Sequence[Sequence[int]], rewards: Sequence[float | None]) -> EpisodeStats:
        """Learn from one episode: its children and their rewards; one REINFORCE step.

        Args:
            samples: the episode's children as option indices, one per decision: normally what
                :meth:`sample` returned, in any order. Any valid architecture is accepted (the paper
                fixes the very first child to the largest network), though REINFORCE's gradient is
                unbiased only for children the policy sampled.
            rewards: their validation Dice, same order; ``None`` or NaN marks a failed child, which is
                counted and left out of the policy gradient and of the baseline (see the module doc).
                When every child failed, no step is taken, but the episode still counts.

        Returns:
            the episode's statistics (also appended to :attr:`history`).

        Raises:
            ValueError: when ``samples`` is empty, the lengths differ, a child has the wrong number of
                decisions or an index out of its decision's range, or a reward is infinite or not a number.
        """
        if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
            raise ValueError(f"samples must be a sequence of architectures, got {brief(samples)}")
        if isinstance(rewards, (str, bytes)) or not isinstance(rewards, Sequence):
            raise ValueError(f"rewards must be a sequence of numbers or None, got {brief(rewards)}")
        if not samples:
            raise ValueError("samples must not be empty: an episode has at least one child")
        if len(samples) != len(rewards):
            raise ValueError(f"samples and rewards must have the same length, got {len(samples)} and {len(rewards)}")
        children = [self._check_sample(i, s) for i, s in enumerate(samples)]
        checked = [self._check_reward(i, r) for i, r in enumerate(rewards)]
        with _one_thread():
            stats = self._learn(children, checked)
        self._history.append(stats)
        self._episode += 1
        return stats

    def _learn(self, children: list[Architecture], checked: list[float | None]) -> EpisodeStats:
        most_likely = self.most_likely()
        same, mode = episode_fractions(children, most_likely)
        actions = torch.tensor(children, dtype=torch.long)
        _, log_prob, entropy = self._policy(len(children), actions=actions)
        mean_entropy = entropy.mean()
        ok = [i for i, r in enumerate(checked) if r is not None]
        common: dict[str, Any] = dict(
            episode=self._episode,
            samples=tuple(children),
            rewards=tuple(checked),
            n_failed=len(children) - len(ok),
            entropy=float(mean_entropy.detach()),
            most_likely=most_likely,
            same_as_most_likely=same,
            mode_fraction=mode,
        )
        if not ok:
            return EpisodeStats(**common, stepped=False, baseline_before=self._baseline, baseline=self._baseline)
        values = torch.tensor([checked[i] for i in ok], dtype=_DTYPE)
        mean_reward = float(values.mean())
        baseline_before = self._baseline if self._baseline is not None else mean_reward
        policy_loss = -((values - baseline_before) * log_prob[ok]).mean()
        loss = policy_loss - self._config.entropy_weight * mean_entropy
        if loss.requires_grad:  # False only when every decision has a single option: nothing to learn
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
        decay = self._config.baseline_decay
        self._baseline = decay * baseline_before + (1.0 - decay) * mean_reward
        return EpisodeStats(
            **common,
            stepped=True,
            mean_reward=mean_reward,
            max_reward=float(values.max()),
            baseline_before=baseline_before,
            baseline=self._baseline,
            policy_loss=float(policy_loss.detach()),
            loss=float(loss.detach()),
        )

    def _check_sample(self, i: int, sample: Any) -> Architecture:
        if isinstance(sample, (str, bytes)) or not isinstance(sample, Sequence):
            raise ValueError(f"samples[{i}] must be a sequence of option indices, got {brief(sample)}")
        if len(sample) != len(self._decisions):
            raise ValueError(f"samples[{i}] has {len(sample)} decisions, expected {len(self._decisions)} (one option index per decision)")
        indices = []
        for t, (value, (kind, count)) in enumerate(zip(sample, self._decisions, strict=True)):
            try:
                if isinstance(value, bool):
                    raise TypeError
                index = operator.index(value)
            except TypeError:
                raise ValueError(f"samples[{i}][{t}] ({kind!r}) must be an integer option index, got {brief(value)}") from None
            if not 0 <= index < count:
                raise ValueError(f"samples[{i}][{t}] ({kind!r}) is {index}, out of range: that decision has {count} options, 0..{count - 1}")
            indices.append(index)
        return tuple(indices)

    @staticmethod
    def _check_reward(i: int, reward: Any) -> float | None:
        if reward is None:
            return None
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
            raise ValueError(f"rewards[{i}] must be a number or None, got {brief(repr(reward))}")
        value = float(reward)
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise ValueError(f"rewards[{i}] must be finite, got {value}: pass None for a failed child")
        return value

    # ------------------------------------------------------------------ persistence
    def state(self) -> NasControllerState:
        """The JSON part of the controller's state: settings, decisions, episode counter, baseline, history."""
        return NasControllerState(
            config=self._config, decisions=self._decisions, episode=self._episode, baseline=self._baseline, history=tuple(self._history)
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole state (weights, Adam state, baseline, generator, history) to one zip file, atomically.

        Returns:
            the path written.

        Raises:
            StorageError: when the file cannot be written.
        """
        tensors = {"policy": self._policy.state_dict(), "optimizer": self._optimizer.state_dict(), "generator": self._generator.get_state()}
        return write_state(path, self.state(), tensors, _NAS_STATE)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EnasController:
        """Restore a controller saved by :meth:`save`; it samples and learns exactly as the saver would have.

        Raises:
            StorageError: when the file does not exist.
            InputError: when it is not a NAS controller state (an HPO controller's state included),
                is corrupt, or has another schema version.
        """
        source = Path(path)
        state, tensors = read_archive(source, _NAS_STATE)
        try:
            controller = cls(state.decisions, state.config)
            controller._policy.load_state_dict(tensors["policy"])
            controller._optimizer.load_state_dict(tensors["optimizer"])
            controller._generator.set_state(tensors["generator"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            problem = f"its tensors do not match its decisions and config ({brief(exc)})"
            raise InputError(source, problem, _FIX_CORRUPT) from exc
        controller._episode = state.episode
        controller._baseline = state.baseline
        controller._history = list(state.history)
        return controller


