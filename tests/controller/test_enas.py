"""ENAS controller for NAS: samples within the options, determinism, learning a toy bandit, baseline, entropy, failed children, state file."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from proxyhpo.config import EpisodeStats, NasControllerConfig, NasControllerState
from proxyhpo.controller import EnasController, ReinforceController
from proxyhpo.controller.enas import episode_fractions
from proxyhpo.errors import InputError, StorageError

# two decisions of kind "pool" with different option counts, a one-option decision in the middle
DECISIONS = [("patch", 5), ("pool", 3), ("fixed", 1), ("pool", 2), ("act", 3), ("skip", 2)]
TARGET = (3, 2, 0, 1, 0, 1)


def _bandit(architecture: tuple[int, ...]) -> float:
    """Fraction of decisions equal to TARGET's."""
    return sum(a == b for a, b in zip(architecture, TARGET, strict=True)) / len(TARGET)


def _weights(controller: EnasController) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in controller.policy.state_dict().items()}


def _assert_same_tensors(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same_tensors(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same_tensors(x, y)
    else:
        assert a == b


def _episodes(controller: EnasController, episodes: int, n: int) -> list[list[tuple[int, ...]]]:
    out = []
    for e in range(episodes):
        children = controller.sample(n)
        rewards: list[float | None] = [_bandit(c) for c in children]
        if e % 3 == 1:
            rewards[0] = None  # failed children must replay identically too
        controller.update(children, rewards)
        out.append(children)
    return out


def test_config_defaults_are_the_papers() -> None:
    config = NasControllerConfig()
    assert (config.lr, config.weight_decay, config.entropy_weight, config.hidden_size, config.seed) == (1e-3, 1e-6, 1e-4, 64, 0)
    assert 0.0 <= config.baseline_decay < 1.0
    with pytest.raises(ValueError, match="baseline_decay"):
        NasControllerConfig(baseline_decay=1.0)
    with pytest.raises(ValueError, match="unknown|Extra inputs"):
        NasControllerConfig(learning_rate=0.1)


def test_samples_have_one_index_per_decision_within_its_options() -> None:
    controller = EnasController(DECISIONS)
    children = controller.sample(400)
    assert len(children) == 400
    for child in children:
        assert isinstance(child, tuple) and len(child) == len(DECISIONS)
        assert all(type(i) is int and 0 <= i < count for i, (_, count) in zip(child, DECISIONS, strict=True))
    # the untrained policy is uniform: every option of every decision comes up, the one-option decision is always 0
    for t, (_, count) in enumerate(DECISIONS):
        assert {c[t] for c in children} == set(range(count))
    assert controller.sample(1)[0][2] == 0


def test_same_seed_gives_same_samples_and_global_rng_is_left_alone() -> None:
    before = torch.get_rng_state()
    first = _episodes(EnasController(DECISIONS, NasControllerConfig(seed=4)), episodes=3, n=6)
    second = _episodes(EnasController(DECISIONS, NasControllerConfig(seed=4)), episodes=3, n=6)
    assert first == second
    assert EnasController(DECISIONS, NasControllerConfig(seed=5)).sample(6) != first[0]
    assert torch.equal(torch.get_rng_state(), before)


def test_learns_a_toy_bandit() -> None:
    config = NasControllerConfig(lr=0.05, hidden_size=16, seed=1)
    controller = EnasController(DECISIONS, config)
    initial_entropy = controller.entropy()
    assert initial_entropy == pytest.approx(math.log(5) + math.log(3) + math.log(2) + math.log(3) + math.log(2), abs=1e-12)
    for _ in range(150):
        children = controller.sample(10)
        controller.update(children, [_bandit(c) for c in children])
    history = controller.history
    early = sum(s.mean_reward for s in history[:3]) / 3  # type: ignore[misc]
    late = sum(s.mean_reward for s in history[-10:]) / 10  # type: ignore[misc]
    assert early < 0.65 and late > 0.9  # a uniform policy scores 0.48 on average
    assert history[-1].entropy < history[0].entropy / 4
    assert controller.entropy() < initial_entropy / 4
    assert controller.most_likely() == TARGET
    assert history[-1].same_as_most_likely > 0.7


def test_baseline_is_the_moving_average_of_episode_means() -> None:
    config = NasControllerConfig(baseline_decay=0.6)
    controller = EnasController(DECISIONS, config)
    assert controller.baseline is None
    episodes = [[0.2, 0.4, 0.9], [0.5, None, 0.7], [float("nan"), None, None], [0.1, 0.1, 0.4]]
    expected: float | None = None
    for e, rewards in enumerate(episodes):
        stats = controller.update(controller.sample(3), rewards)
        ok = [r for r in rewards if r is not None and not math.isnan(r)]
        before = expected
        if ok:
            mean = sum(ok) / len(ok)
            before = mean if expected is None else expected
            expected = 0.6 * before + 0.4 * mean
            assert stats.mean_reward == pytest.approx(mean, abs=1e-15) and stats.max_reward == max(ok)
        assert stats.baseline_before == pytest.approx(before, abs=1e-15)
        assert stats.baseline == pytest.approx(expected, abs=1e-15) and controller.baseline == stats.baseline
        assert stats.episode == e and controller.episode == e + 1
    assert controller.history[0].baseline == pytest.approx(0.5, abs=1e-15)  # the first episode's mean
    assert len(controller.history) == 4


def test_single_option_decisions_have_zero_entropy() -> None:
    controller = EnasController([("a", 1), ("b", 1), ("c", 1)])
    assert controller.entropy() == 0.0
    assert controller.sample(5) == [(0, 0, 0)] * 5
    assert controller.most_likely() == (0, 0, 0)
    stats = controller.update([(0, 0, 0)] * 2, [0.3, 0.8])
    assert stats.entropy == 0.0 and stats.same_as_most_likely == 1.0 and stats.mode_fraction == 1.0
    mixed = EnasController([("a", 3), ("b", 1)])
    assert mixed.entropy() == pytest.approx(math.log(3), abs=1e-12)


def test_failed_children_are_counted_and_left_out_of_the_policy_gradient() -> None:
    # without the entropy bonus, an episode with failed children steps as one without them (up to
    # rounding: the batch of five sums the zero gradients of the failed rows in its matrix products)
    config = NasControllerConfig(entropy_weight=0.0, lr=0.01)
    with_failed, without = EnasController(DECISIONS, config), EnasController(DECISIONS, config)
    children = with_failed.sample(5)
    stats = with_failed.update(children, [0.3, None, 0.9, float("nan"), 0.5])
    reference = without.update([children[0], children[2], children[4]], [0.3, 0.9, 0.5])
    torch.testing.assert_close(_weights(with_failed), _weights(without), rtol=1e-9, atol=1e-10)
    assert stats.rewards == (0.3, None, 0.9, None, 0.5) and stats.n_failed == 2 and stats.stepped
    assert stats.mean_reward == reference.mean_reward and stats.baseline == reference.baseline
    assert stats.policy_loss == pytest.approx(reference.policy_loss, abs=1e-15)
    # the entropy term is over every child, failed ones included, under the policy that sampled them
    with torch.no_grad():
        entropy = EnasController(DECISIONS, config).policy(5, actions=torch.tensor(children))[2]
    assert stats.entropy == float(entropy.mean())


def test_all_failed_takes_no_step_but_the_episode_counts() -> None:
    controller = EnasController(DECISIONS)
    controller.update(controller.sample(3), [0.1, 0.5, 0.2])
    weights, adam, baseline = _weights(controller), controller._optimizer.state_dict(), controller.baseline
    adam = {"state": {k: {n: t.clone() for n, t in v.items()} for k, v in adam["state"].items()}, "param_groups": adam["param_groups"]}
    stats = controller.update(controller.sample(4), [None, float("nan"), None, None])
    _assert_same_tensors(_weights(controller), weights)
    _assert_same_tensors(controller._optimizer.state_dict()["state"], adam["state"])
    assert not stats.stepped and stats.n_failed == 4 and stats.loss is None and stats.mean_reward is None
    assert stats.baseline == stats.baseline_before == baseline == controller.baseline
    assert math.isfinite(stats.entropy) and stats.entropy > 0
    assert controller.episode == 2 and stats.episode == 1


def test_loss_is_policy_loss_minus_entropy_bonus() -> None:
    controller = EnasController(DECISIONS, NasControllerConfig(entropy_weight=0.05))
    stats = controller.update(controller.sample(4), [0.1, 0.5, 0.2, 0.4])
    assert stats.loss == pytest.approx(stats.policy_loss - 0.05 * stats.entropy, abs=1e-15)  # type: ignore[operator]
    # the first episode's baseline is its own mean: advantages sum to zero, uniform policy: equal log-probs
    assert stats.policy_loss == pytest.approx(0.0, abs=1e-12)


def test_episode_fractions_on_a_constructed_episode() -> None:
    controller = EnasController([("a", 3), ("b", 2), ("c", 3)])
    assert controller.most_likely() == (0, 0, 0)  # zero heads: ties go to the lowest index
    children = [(0, 0, 0)] * 3 + [(1, 0, 2)] * 4 + [(2, 1, 0)]
    stats = controller.update(children, [0.5] * 8)
    assert stats.most_likely == (0, 0, 0)
    assert stats.same_as_most_likely == 3 / 8 and stats.mode_fraction == 4 / 8
    assert stats.samples == tuple(children)
    assert episode_fractions([(1, 1)], (0, 1)) == (0.0, 1.0)
    assert episode_fractions([(0, 1), (0, 1), (2, 0), (1, 1)], (1, 1)) == (0.25, 0.5)


def test_episode_stats_validate() -> None:
    fields: dict[str, Any] = dict(
        episode=0, samples=((0,), (1,)), rewards=(0.5, None), n_failed=1, stepped=True, entropy=0.1,
        most_likely=(0,), same_as_most_likely=0.5, mode_fraction=0.5,
    )  # fmt: skip
    EpisodeStats(**fields)
    with pytest.raises(ValueError, match="same length"):
        EpisodeStats(**{**fields, "rewards": (0.5,), "n_failed": 0})
    with pytest.raises(ValueError, match="n_failed is 0 but 1"):
        EpisodeStats(**{**fields, "n_failed": 0})
    with pytest.raises(ValueError, match=r"rewards\[0\] must be finite"):
        EpisodeStats(**{**fields, "rewards": (float("inf"), None)})


@pytest.mark.parametrize(
    ("samples", "rewards", "message"),
    [
        ([(0, 0, 0, 0, 0)], [0.5], r"samples\[0\] has 5 decisions, expected 6"),
        ([(0,) * 6, (0, 3, 0, 0, 0, 0)], [0.5, 0.5], r"samples\[1\]\[1\] \('pool'\) is 3, out of range: that decision has 3 options, 0..2"),
        ([(0, 0, 1, 0, 0, 0)], [0.5], r"samples\[0\]\[2\] \('fixed'\) is 1, out of range: that decision has 1 options, 0..0"),
        ([(-1, 0, 0, 0, 0, 0)], [0.5], r"samples\[0\]\[0\] \('patch'\) is -1, out of range"),
        ([(0.0, 0, 0, 0, 0, 0)], [0.5], r"samples\[0\]\[0\] \('patch'\) must be an integer option index, got 0.0"),
        ([(0,) * 6, (0,) * 6], [0.5], "samples and rewards must have the same length, got 2 and 1"),
        ([], [], "samples must not be empty"),
        ([(0,) * 6], [float("inf")], r"rewards\[0\] must be finite, got inf: pass None for a failed child"),
        ([(0,) * 6], ["0.5"], r"rewards\[0\] must be a number or None, got '0.5'"),
    ],
)
def test_update_checks_its_arguments(samples: list, rewards: list, message: str) -> None:
    controller = EnasController(DECISIONS)
    weights = _weights(controller)
    with pytest.raises(ValueError, match=message):
        controller.update(samples, rewards)
    _assert_same_tensors(_weights(controller), weights)
    assert controller.episode == 0 and controller.history == []


@pytest.mark.parametrize(
    ("decisions", "message"),
    [
        ([], "decisions must not be empty"),
        ([("a", 2), ("b", 0)], r"decisions\[1\] \('b'\) option_count must be an integer >= 1, got 0"),
        ([("a", 2), ("", 2)], r"decisions\[1\] kind must be a non-empty string"),
        ([("a", 2, 3)], r"decisions\[0\] must be a \(kind, option_count\) pair"),
    ],
)
def test_constructor_checks_decisions(decisions: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnasController(decisions)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_sample_checks_n(n: Any) -> None:
    with pytest.raises(ValueError, match="n must be a positive integer"):
        EnasController(DECISIONS).sample(n)


def test_kinds_enter_the_lstm_input() -> None:
    policy = EnasController(DECISIONS).policy
    assert policy.kinds == ("patch", "pool", "fixed", "act", "skip")
    assert policy.kind_of_step == [0, 1, 2, 1, 3, 4]
    kinds = policy.kind_embedding.weight
    assert all(not torch.equal(kinds[i], kinds[j]) for i in range(5) for j in range(i))
    with torch.no_grad():
        for p in policy.heads.parameters():
            p.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(0))
        actions = torch.tensor([TARGET])
        before = policy(1, actions=actions)[1]
        kinds[4] += 0.5  # the kind of the last step only: only its distribution can change
        after = policy(1, actions=actions)[1]
    assert not torch.equal(before, after)


def test_save_load_continues_bit_for_bit(tmp_path: Path) -> None:
    config = NasControllerConfig(lr=0.02, hidden_size=8, seed=7)
    in_memory = EnasController(DECISIONS, config)
    expected = _episodes(in_memory, episodes=4, n=5)
    expected.append(in_memory.sample(5))

    path = tmp_path / "state" / "nas.zip"
    EnasController(DECISIONS, config).save(path)
    resumed = []
    for e in range(4):
        sampler = EnasController.load(path)
        children = sampler.sample(5)
        sampler.save(path)  # sample in one "pod", update in another: only the file in between
        updater = EnasController.load(path)
        rewards: list[float | None] = [_bandit(c) for c in children]
        if e % 3 == 1:
            rewards[0] = None
        updater.update(children, rewards)
        updater.save(path)
        resumed.append(children)
    final = EnasController.load(path)
    resumed.append(final.sample(5))

    assert resumed == expected
    _assert_same_tensors(final.policy.state_dict(), in_memory.policy.state_dict())
    _assert_same_tensors(final._optimizer.state_dict(), in_memory._optimizer.state_dict())
    _assert_same_tensors(final._generator.get_state(), in_memory._generator.get_state())
    assert final.baseline == in_memory.baseline and final.episode == in_memory.episode == 4
    assert final.history == in_memory.history and final.config == config and final.decisions == tuple(DECISIONS)
    assert final.most_likely() == in_memory.most_likely() and final.entropy() == in_memory.entropy()


def test_state_file_is_plain_json_and_deterministic(tmp_path: Path) -> None:
    controller = EnasController(DECISIONS, NasControllerConfig(hidden_size=8))
    controller.update(controller.sample(3), [0.2, None, 0.6])
    first, second = controller.save(tmp_path / "a.zip"), controller.save(tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    EnasController.load(first).save(tmp_path / "c.zip")
    assert (tmp_path / "c.zip").read_bytes() == first.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert sorted(archive.namelist()) == ["nas_controller.json", "tensors.pt"]
        document = json.loads(archive.read("nas_controller.json"))
    state = NasControllerState.model_validate(document)
    assert state.episode == 1 and state.decisions == tuple(DECISIONS)
    assert document["history"][0]["rewards"] == [0.2, None, 0.6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip", "c.zip"]  # no temporary files left


def test_loading_the_wrong_kind_of_file_gives_one_clear_error(tmp_path: Path) -> None:
    hpo = ReinforceController(seed=0).save(tmp_path / "hpo.zip")
    with pytest.raises(InputError, match="is an HPO controller state .* not a NAS controller state; fix: load it with ReinforceController.load"):
        EnasController.load(hpo)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="is not a NAS controller state file \\(not a zip archive"):
        EnasController.load(garbage)
    with pytest.raises(StorageError, match="NAS controller state file does not exist"):
        EnasController.load(tmp_path / "nowhere.zip")
    # a JSON part that does not fit its tensors (another search space) is refused too
    path = EnasController(DECISIONS, NasControllerConfig(hidden_size=8)).save(tmp_path / "nas.zip")
    with zipfile.ZipFile(path) as archive:
        document, tensors = json.loads(archive.read("nas_controller.json")), archive.read("tensors.pt")
    document["decisions"][0][1] = 4
    with zipfile.ZipFile(tmp_path / "edited.zip", "w") as archive:
        archive.writestr("nas_controller.json", json.dumps(document))
        archive.writestr("tensors.pt", tensors)
    with pytest.raises(InputError, match="its tensors do not match its decisions and config"):
        EnasController.load(tmp_path / "edited.zip")
