"""The NAS search loop on a tiny synthetic task: learning, bit-exact hand-over between tasks, resume, export."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pydantic import ValidationError

from proxyhpo.config.nas import NasFold, NasPlan
from proxyhpo.errors import ConfigError, InputError, ProxyHPOError
from proxyhpo.networks.nas_encoding import largest
from proxyhpo.training import nas_search
from proxyhpo.training.nas_export import ExportedNetwork, evaluate_fold
from proxyhpo.training.nas_search import init_search, plan_nas, read_search_state, search_episodes


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYHPO_HOME", str(tmp_path / "home"))  # checkpoints and the MLflow store per test
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PROXYHPO_CHECKPOINT_ROOT", raising=False)


def _run(study, data, plan, folder: Path, tasks: range) -> Path:
    init_search(study, plan, 0, "all", out=folder / "state-0.pt")
    for task in tasks:
        search_episodes(study, data, plan, 0, "all", task=task, state_in=folder / f"state-{task}.pt", state_out=folder / f"state-{task + 1}.pt")
    return folder / f"state-{tasks.stop}.pt"


def _same_state(a, b) -> None:
    for (name, x), (_, y) in zip(a.supernet.state_dict().items(), b.supernet.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert a.controller.sample(3) == b.controller.sample(3)
    assert a.next_episode == b.next_episode


def test_plan_cuts_folds_and_resolves_the_space(nas_setup) -> None:
    study, data, plan, root = nas_setup
    assert NasPlan.read(root / "plan.json") == plan
    assert len(plan.folds) == 2
    for fold in plan.folds:
        assert set(fold.search_train_ids) | set(fold.search_validation_ids) | set(fold.test_ids) == set(data.search_ids)
        assert len(fold.search_validation_ids) == round(study.nas.validation_fraction * (len(data.search_ids) - len(fold.test_ids)))
    assert plan.internal_test_ids == tuple(data.holdout_ids)
    assert plan.space.in_channels == 1


def test_no_case_that_rewards_the_controller_is_a_case_the_cv_dice_is_measured_on(nas_setup) -> None:
    """The leak of issue 18: the reported cross-validated Dice came from the folds that rewarded the controller."""
    study, data, plan, _ = nas_setup
    tested = [case for fold in plan.folds for case in fold.test_ids]
    assert sorted(tested) == sorted(data.search_ids)  # every search case is tested once: a cross-validation
    for fold in plan.folds:
        read_by_search = set(fold.search_ids("all")) | set(fold.search_validation_ids)
        assert not read_by_search & set(fold.test_ids), fold
        assert not read_by_search & set(plan.internal_test_ids), fold


def test_a_config_whose_search_reads_the_test_part_is_refused_by_the_planner(nas_setup) -> None:
    study, data, _, _ = nas_setup
    paper = study.model_copy(update={"nas": study.nas.model_copy(update={"validation_fraction": 0.0})})
    with pytest.raises(ConfigError, match=r"^nas.validation_fraction: is 0: the controller would be rewarded on each fold's test part.*; fix: set nas.validation_fraction") as refused:
        plan_nas(paper, data)
    assert "\n" not in str(refused.value)
    no_training = study.model_copy(update={"nas": study.nas.model_copy(update={"validation_fraction": 0.9})})
    with pytest.raises(ConfigError, match="nas.validation_fraction: 0.9 leaves no search-train case"):
        plan_nas(no_training, data)


def test_a_fold_or_plan_whose_search_reads_its_test_cases_does_not_validate(nas_setup) -> None:
    _, _, plan, _ = nas_setup
    with pytest.raises(ValidationError, match="the search reads test cases"):
        NasFold(fold=0, search_train_ids=("a",), search_validation_ids=("b",), test_ids=("b", "c"))
    with pytest.raises(ValidationError, match="reads the study's held-out cases"):
        NasPlan.model_validate(plan.model_dump() | {"internal_test_ids": (plan.folds[0].search_validation_ids[0],)})


def test_too_few_cases_for_the_folds_is_one_clear_error(nas_setup) -> None:
    study, data, _, _ = nas_setup
    with pytest.raises(InputError, match="nas.folds"):
        plan_nas(study.model_copy(update={"nas": study.nas.model_copy(update={"folds": 8})}), data)


def test_reward_rises_and_entropy_falls(nas_setup, tmp_path: Path) -> None:
    study, data, plan, _ = nas_setup
    study = study.model_copy(update={"nas": study.nas.model_copy(update={"episodes": 8, "episodes_per_task": 8, "children_per_episode": 3})})
    init_search(study, plan, 0, "all", out=tmp_path / "s0.pt")
    stats = search_episodes(study, data, plan, 0, "all", task=0, state_in=tmp_path / "s0.pt", state_out=tmp_path / "s1.pt")
    rewards = [s.mean_reward for s in stats]
    entropies = [s.entropy for s in stats]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]), rewards
    assert entropies[-1] < entropies[0], entropies


def test_shared_weights_survive_episode_and_task_boundaries_bit_for_bit(nas_setup, tmp_path: Path) -> None:
    study, data, plan, _ = nas_setup
    one_task = study.model_copy(update={"nas": study.nas.model_copy(update={"episodes_per_task": 4})})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _run(one_task, data, plan, tmp_path / "a", range(1))  # episodes 0-3 in one task
    chained = _run(study, data, plan, tmp_path / "b", range(2))  # the same as two tasks of two episodes
    _same_state(read_search_state(whole, one_task, plan, 0, "all"), read_search_state(chained, study, plan, 0, "all"))


def test_a_killed_task_resumes_from_its_last_episode(nas_setup, tmp_path: Path) -> None:
    study, data, plan, _ = nas_setup
    one_task = study.model_copy(update={"nas": study.nas.model_copy(update={"episodes_per_task": 4})})
    (tmp_path / "ref").mkdir()
    reference = _run(one_task, data, plan, tmp_path / "ref", range(1))
    shutil.rmtree(tmp_path / "home" / "checkpoints")  # or the same search would resume from the reference's last episode
    init_search(one_task, plan, 0, "all", out=tmp_path / "s0.pt")

    def killed_after_two(stats) -> None:
        if stats.episode == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search_episodes(one_task, data, plan, 0, "all", task=0, state_in=tmp_path / "s0.pt", state_out=tmp_path / "s1.pt", on_episode=killed_after_two)
    assert not (tmp_path / "s1.pt").exists()
    resumed = search_episodes(one_task, data, plan, 0, "all", task=0, state_in=tmp_path / "s0.pt", state_out=tmp_path / "s1.pt")
    assert [s.episode for s in resumed] == [2, 3]  # episodes 0 and 1 came from the checkpoint
    _same_state(read_search_state(tmp_path / "s1.pt", one_task, plan, 0, "all"), read_search_state(reference, one_task, plan, 0, "all"))


def test_a_state_of_another_search_is_refused(nas_setup, tmp_path: Path) -> None:
    study, data, plan, _ = nas_setup
    init_search(study, plan, 1, "all", out=tmp_path / "fold1.pt")
    with pytest.raises(ProxyHPOError, match="another search"):
        search_episodes(study, data, plan, 0, "all", task=0, state_in=tmp_path / "fold1.pt", state_out=tmp_path / "out.pt")


def test_exported_network_loads_and_segments_a_volume(nas_setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study, data, plan, _ = nas_setup
    read_by_search: set[str] = set()
    load = nas_search.load_nas_volumes

    def recorded(study, data, case_ids, *args, **kwargs):  # the real loader, noting which cases the search reads
        read_by_search.update(case_ids)
        return load(study, data, case_ids, *args, **kwargs)

    monkeypatch.setattr(nas_search, "load_nas_volumes", recorded)
    state = _run(study, data, plan, tmp_path, range(2))
    monkeypatch.undo()
    result = evaluate_fold(study, data, plan, 0, "all", state_in=state, model_dir=tmp_path / "model", out=tmp_path / "result.json")
    assert result.test_dice is not None and 0.0 <= result.test_dice <= 1.0
    # the cross-validated Dice's term comes from cases the search never read
    assert set(result.test_case_dice) == set(plan.fold(0).test_ids)
    assert read_by_search == set(plan.fold(0).search_train_ids) | set(plan.fold(0).search_validation_ids)
    assert not read_by_search & set(result.test_case_dice)
    assert result.search_validation_dice is not None and result.internal_test_dice is not None
    assert (result.train_cases, result.search_validation_cases, result.test_cases) == tuple(
        len(ids) for ids in (plan.fold(0).search_train_ids, plan.fold(0).search_validation_ids, plan.fold(0).test_ids)
    )
    assert len(result.episodes) == study.nas.episodes
    assert result.search_process_hours > 0

    network = ExportedNetwork(tmp_path / "model", device="cpu")
    assert network.architecture == result.architecture
    from proxyhpo.data.msd import load_dataset

    case = load_dataset(data.dataset).cases[0]
    mask_path = network.segment_file(case.image, tmp_path / "mask.nii.gz")
    mask, image = nib.load(mask_path), nib.load(case.image)
    assert mask.shape == image.shape[:3]
    assert np.allclose(mask.affine, image.affine, atol=1e-3)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}

    from proxyhpo.cli import main

    assert main(["segment", str(tmp_path / "model"), case.image, "--out-dir", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    assert (tmp_path / "cli" / (Path(case.image).name.removesuffix(".nii.gz") + "_mask.nii.gz")).exists()
    assert main(["segment", str(tmp_path / "nowhere"), case.image]) == 2
    two_channels = tmp_path / "two_channels.nii.gz"  # issue 23: one line, not predict's ValueError
    nib.save(nib.Nifti1Image(np.stack([np.asarray(image.dataobj)] * 2, axis=-1), image.affine), two_channels)
    assert main(["segment", str(tmp_path / "model"), str(two_channels), "--out-dir", str(tmp_path / "cli2"), "--device", "cpu"]) == 2
    assert not (tmp_path / "cli2").exists() or not any((tmp_path / "cli2").iterdir())

    (tmp_path / "model" / "weights.pt").write_bytes(b"not torch")
    with pytest.raises(InputError, match="weights.pt"):
        ExportedNetwork(tmp_path / "model", device="cpu")


def test_proxy_search_data_come_from_each_folds_search_train_cases(nas_setup) -> None:
    study, data, _, _ = nas_setup
    both = study.model_copy(update={"nas": study.nas.model_copy(update={"search_data": "both"})})
    plan = plan_nas(both, data)
    assert plan.proxy_method == "mi+labelcrop"
    for fold in plan.folds:
        assert len(fold.proxy_ids) == study.selection.budget
        assert set(fold.proxy_ids) <= set(fold.search_train_ids)


def test_the_report_puts_the_proxy_search_beside_the_full_one(nas_setup) -> None:
    from proxyhpo.analysis.nas_report import nas_summary, render_nas_markdown
    from proxyhpo.config.nas import NasFoldResult

    study, _, plan, _ = nas_setup
    arch = largest(plan.space)

    def result(arm: str, fold: int, dice: float, hours: float) -> NasFoldResult:
        return NasFoldResult(fold=fold, arm=arm, architecture=arch, test_dice=dice, search_gpu_hours=hours, train_cases=4 if arm == "all" else 2)

    results = [result("all", 0, 0.8, 2.0), result("all", 1, 0.7, 2.0), result("proxy", 0, 0.7, 0.5), result("proxy", 1, 0.6, 0.5)]
    summary = nas_summary(results)
    assert summary["metrics"]["all_cv_dice_mean"] == pytest.approx(0.75)
    assert summary["metrics"]["proxy_speedup"] == pytest.approx(4.0)
    assert summary["metrics"]["proxy_cv_dice_change"] == pytest.approx(-0.1)
    assert summary["metrics"]["total_gpu_hours"] == pytest.approx(5.0)
    text = render_nas_markdown(study, plan, summary, results)
    assert "4.00× fewer device-hours" in text and "-0.1000" in text
