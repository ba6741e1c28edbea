"""Persisted controller state: one atomic file, exact continuation after load, readable JSON history, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from proxyhpo.config import ControllerState, HistoryRecord
from proxyhpo.config.controller import SCHEMA_VERSION
from proxyhpo.controller import ReinforceController, read_history, read_state
from proxyhpo.errors import InputError, StorageError

Reward = Callable[[Mapping[str, Any]], float]


def _rewards(reward_fn: Reward, proposals: list, round_index: int) -> list[float | None]:
    rewards: list[float | None] = [reward_fn(p.hyperparameters) for p in proposals]
    if round_index == 1:
        rewards[2] = None  # a failed trial must survive the round trip too
    return rewards


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


def test_save_load_between_every_step_continues_identically(tmp_path: Path, reward_fn: Reward) -> None:
    in_memory = ReinforceController(seed=21)
    expected = []
    for r in range(3):
        proposals = in_memory.propose(6)
        in_memory.update(proposals, _rewards(reward_fn, proposals, r))
        expected.append(proposals)
    expected.append(in_memory.propose(6))

    path = tmp_path / "state" / "controller.zip"
    ReinforceController(seed=21).save(path)
    resumed = []
    for r in range(3):
        # a proposer that dies before saving (a retried pod) leaves the file as it was
        ReinforceController.load(path).propose(6)
        # propose in one "pod", update in another: fresh objects, only the file in between
        proposer = ReinforceController.load(path)
        proposals = proposer.propose(6)
        proposer.save(path)
        updater = ReinforceController.load(path)
        assert updater.pending() == proposals
        updater.update(proposals, _rewards(reward_fn, proposals, r))
        updater.save(path)
        resumed.append(proposals)
    final = ReinforceController.load(path)
    resumed.append(final.propose(6))

    assert resumed == expected
    _assert_same_tensors(final.policy.state_dict(), in_memory.policy.state_dict())
    _assert_same_tensors(final._optimizer.state_dict(), in_memory._optimizer.state_dict())
    assert final.baseline == in_memory.baseline and final.round == in_memory.round == 3
    assert final.history() == in_memory.history()
    assert final.update_stats() == in_memory.update_stats()
    assert final.best() == in_memory.best()


def test_next_round_in_another_process_continues_identically(tmp_path: Path, reward_fn: Reward) -> None:
    in_memory = ReinforceController(seed=8)
    proposals = in_memory.propose(4)
    in_memory.update(proposals, [reward_fn(p.hyperparameters) for p in proposals])
    path = in_memory.save(tmp_path / "controller.zip")
    expected = in_memory.propose(4)
    in_memory.update(expected, [0.1, 0.2, 0.3, 0.4])

    script = textwrap.dedent(
        f"""
        from proxyhpo.controller import ReinforceController
        controller = ReinforceController.load({str(path)!r})
        controller.update(controller.propose(4), [0.1, 0.2, 0.3, 0.4])
        controller.save({str(path)!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    other = ReinforceController.load(path)
    assert other.history() == in_memory.history()
    _assert_same_tensors(other.policy.state_dict(), in_memory.policy.state_dict())
    assert other.propose(4) == in_memory.propose(4)


def test_same_state_gives_identical_bytes(tmp_path: Path, reward_fn: Reward) -> None:
    controller = ReinforceController(seed=1)
    proposals = controller.propose(3)
    controller.update(proposals, [reward_fn(p.hyperparameters) for p in proposals])
    first, second = controller.save(tmp_path / "a.zip"), controller.save(tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    ReinforceController.load(first).save(tmp_path / "c.zip")
    assert (tmp_path / "c.zip").read_bytes() == first.read_bytes()


def test_history_is_plain_json(tmp_path: Path, reward_fn: Reward) -> None:
    controller = ReinforceController(seed=2)
    proposals = controller.propose(4)
    controller.update(proposals, [0.2, None, 0.9, 0.4])
    pending = controller.propose(2)
    path = controller.save(tmp_path / "controller.zip")

    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["controller.json", "tensors.pt"]
        document = json.loads(archive.read("controller.json"))
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["round"] == 1 and document["next_proposal_id"] == 6
    assert document["search_space"]["lr"] == {"type": "log_uniform", "low": 1e-4, "high": 1e-2}
    assert [h["reward"] for h in document["history"]] == [0.2, None, 0.9, 0.4]
    assert [h["failed"] for h in document["history"]] == [False, True, False, False]
    assert document["history"][2]["proposal"]["hyperparameters"] == proposals[2].hyperparameters
    assert [p["proposal_id"] for p in document["pending"]] == [p.proposal_id for p in pending]
    assert document["updates"][0]["entropy_bonus"] == pytest.approx(controller.update_stats()[0].entropy_bonus)

    history = read_history(path)
    assert history == controller.history()
    assert all(isinstance(r, HistoryRecord) for r in history)
    state, tensors = read_state(path)
    assert isinstance(state, ControllerState) and set(tensors) == {"policy", "optimizer", "generator"}
    assert controller.best() == (proposals[2], 0.9)


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    controller = ReinforceController(seed=0)
    for _ in range(3):
        controller.save(tmp_path / "controller.zip")
    assert [p.name for p in tmp_path.iterdir()] == ["controller.zip"]


def test_unwritable_destination_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(StorageError) as raised:
        ReinforceController(seed=0).save(blocker / "controller.zip")
    assert str(blocker / "controller.zip") in str(raised.value)
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-folder"]


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.zip"
    with pytest.raises(StorageError, match="controller state file does not exist") as raised:
        ReinforceController.load(missing)
    assert str(raised.value).startswith(f"{missing}: ")
    assert isinstance(raised.value, InputError)


def _rewrite(path: Path, entries: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)


def _entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda p, e: p.write_bytes(b"not a zip at all"), "is not a controller state file (not a zip archive"),
        (lambda p, e: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "is not a controller state file"),
        (lambda p, e: _rewrite(p, {"controller.json": e["controller.json"]}), "entry 'tensors.pt' is missing"),
        (lambda p, e: _rewrite(p, {**e, "controller.json": b"{oops"}), "'controller.json' cannot be read"),
        (lambda p, e: _rewrite(p, {**e, "controller.json": b"[1, 2]"}), "holds a list, not a mapping"),
        (
            lambda p, e: _rewrite(p, {**e, "controller.json": e["controller.json"].replace(b'"schema_version": 1', b'"schema_version":9')}),
            "has schema_version 9, this proxyhpo reads 1",
        ),
        (
            lambda p, e: _rewrite(p, {**e, "controller.json": e["controller.json"].replace(b'"round": 1', b'"round": -4', 1)}),
            "controller.json: key 'round': Input should be greater than or equal to 0 (got -4)",
        ),
        (lambda p, e: _rewrite(p, {**e, "tensors.pt": b"garbage"}), "'tensors.pt' cannot be loaded"),
        (
            lambda p, e: _rewrite(p, {**e, "controller.json": e["controller.json"].replace(b'"novograd"', b'"novograd", "sgd"', 1)}),
            "its tensors do not match its search space and config",
        ),
    ],
    ids=["not-zip", "truncated", "no-tensors", "bad-json", "json-list", "schema-version", "invalid-field", "bad-tensors", "other-space"],
)
def test_corrupt_state_raises_input_error_naming_the_file(
    tmp_path: Path, corrupt: Callable[[Path, dict[str, bytes]], None], expected: str
) -> None:
    controller = ReinforceController(seed=0)
    proposals = controller.propose(2)
    controller.update(proposals, [0.3, 0.4])
    path = controller.save(tmp_path / "controller.zip")
    corrupt(path, _entries(path))
    with pytest.raises(InputError) as raised:
        ReinforceController.load(path)
    message = str(raised.value)
    # an invalid field is named by its entry and key: "<path>:controller.json: key 'round': ..."
    assert (message.startswith(f"{path}: ") or message.startswith(f"{path}:controller.json: key ")) and "\n" not in message and len(message) < 600
    assert expected in message
