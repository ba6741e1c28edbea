"""Multi-class, multi-channel training (issue 20): per-class Dice, DiceCE over classes, widths from the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss
from torch import nn

from proxyhpo.config import DataItem, HyperParameters, NetworkConfig, Normalize, Recipe, TrialPlan, TrialResult, TrialSpec
from proxyhpo.data.msd import load_dataset
from proxyhpo.data.synthetic import write_synthetic_dataset
from proxyhpo.errors import DataError
from proxyhpo.training.data import cache_volumes
from proxyhpo.training.evaluation import evaluate_pack, evaluate_pack_by_class
from proxyhpo.training.pack import ModelPack, per_model_dice_ce
from proxyhpo.training.runner import run_trials

BRAIN_CLASSES = {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}
RECIPE = Recipe(name="tiny-brain", intensity=Normalize(), patch_size=(16, 16, 16), num_samples=1, roi_size=(32, 32, 16), sw_batch_size=1, crop_foreground=False)


@pytest.fixture(scope="module")
def brain_items(tmp_path_factory: pytest.TempPathFactory) -> list[DataItem]:
    """Five 32-pixel brain phantoms: 4 channels (FLAIR, T1w, T1gd, T2w), labels 0..3."""
    root = write_synthetic_dataset("brain", tmp_path_factory.mktemp("brain") / "brain", cases=5, size=32, seed=1).parent
    return [DataItem(**case.as_dict()) for case in load_dataset(root).cases]


class _ChannelsAsLogits(nn.Module):
    """A 1x1x1 convolution fixed to the identity: its logits are its input's channels (so the argmax is known)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(channels).reshape(channels, channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


def test_per_class_dice_is_each_classes_dice_and_mean_their_mean() -> None:
    """A model whose prediction is known: per-class Dice as computed by hand, absent classes left out, mean over classes."""
    rng = np.random.default_rng(0)
    volumes, truths, preds = [], [], []
    for case in range(2):
        truth = rng.integers(0, 4, (8, 8, 8))
        if case == 1:
            truth[truth == 2] = 0  # class 2 absent from the second volume: left out of class 2's mean
        pred = np.where(rng.random((8, 8, 8)) < 0.7, truth, rng.integers(0, 4, (8, 8, 8)))
        image = torch.nn.functional.one_hot(torch.as_tensor(pred), 4).permute(3, 0, 1, 2).float()
        volumes.append({"image": image, "label": torch.as_tensor(truth)[None].float()})
        truths.append(truth)
        preds.append(pred)
    spec = TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-3), network=NetworkConfig.proxy(3))
    pack = ModelPack([spec], models=[_ChannelsAsLogits(4)], in_channels=4, out_channels=4)
    recipe = RECIPE.model_copy(update={"roi_size": (8, 8, 8)})
    (score,) = evaluate_pack_by_class(pack, volumes, recipe).values()
    expected = []
    for c in (1, 2, 3):
        per_case = [_dice(p == c, t == c) for p, t in zip(preds, truths) if (t == c).any()]
        expected.append(sum(per_case) / len(per_case))
    assert score.per_class == pytest.approx(expected, abs=1e-6)
    assert score.mean == pytest.approx(sum(expected) / 3, abs=1e-6)
    assert evaluate_pack(pack, volumes, recipe) == {0: pytest.approx(score.mean)}


def test_loss_is_dice_ce_over_every_class() -> None:
    """The packed loss with 4 classes equals MONAI's DiceCELoss(to_onehot_y, softmax) on each model's outputs."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 4, 6, 6, 6, generator=g)
    labels = torch.randint(0, 4, (2, 2, 1, 6, 6, 6), generator=g).float()
    reference = torch.stack([DiceCELoss(to_onehot_y=True, softmax=True)(logits[k], labels[k]) for k in range(2)])
    torch.testing.assert_close(per_model_dice_ce(logits, labels), reference)


@pytest.fixture(scope="module")
def brain_result(brain_items: list[DataItem], tmp_path_factory: pytest.TempPathFactory) -> TrialResult:
    """One tiny brain trial: real MONAI training, 2 epochs on 16^3 patches, 4 input channels, 4 classes."""
    plan = TrialPlan(
        recipe=RECIPE,
        train=brain_items[:3],
        val=brain_items[3:4],
        internal_test=brain_items[4:],
        epochs=2,
        batch_size=1,
        trials=[TrialSpec(trial_id="brain", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam"), network=NetworkConfig(kind="proxy", levels=3, base_channels=4, num_res_units=1))],
        pack_size=1,
        device="cpu",
        num_workers=0,
        save_model_dir=str(tmp_path_factory.mktemp("models")),
        classes=BRAIN_CLASSES,
    )
    (result,) = run_trials(plan, progress=False)
    return result


NAMES = ["edema", "non-enhancing tumor", "enhancing tumour"]


def test_a_tiny_brain_trial_trains_with_per_class_dice(brain_result: TrialResult) -> None:
    """Per-class Dice at every validation and on the internal test set; networks 4 channels in, 4 classes out."""
    result = brain_result
    assert result.state.value == "COMPLETE" and result.val_epochs == [1, 2]
    assert [list(per_class) for per_class in result.val_class_dice] == [NAMES, NAMES]
    for mean, per_class in zip(result.val_dice, result.val_class_dice):
        assert mean == pytest.approx(sum(per_class.values()) / 3)  # every class is in the validation case
    assert list(result.internal_test_class_dice) == NAMES and result.internal_test_dice is not None
    weights = torch.load(result.model_path)
    widths = [tuple(w.shape[:2]) for name, w in weights.items() if name.endswith("weight") and w.ndim == 5]
    assert widths[0][1] == 4 and any(out == 4 for out, _ in widths[-2:])  # first conv takes 4 channels; the last gives 4 classes


def test_per_class_dice_is_logged_per_class_in_mlflow(brain_result: TrialResult, tmp_path: Path) -> None:
    """The trial's run holds val_dice_class_<name> per validated epoch and internal_test_dice_class_<name> (a real SQLite store)."""
    from proxyhpo import tracking
    from proxyhpo.tracking import names

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = TrialSpec(trial_id="brain", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam"), network=NetworkConfig.proxy(3))
    parent = tracking.start_parent_run("brain-classes", "hpo", config={}, tracking_uri=uri)
    with tracking.trial_runs("brain-classes", [spec], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["brain"].finish(brain_result)
    client = tracking.client(uri)
    assert [m.step for m in client.get_metric_history(runs["brain"].run_id, "val_dice_class_enhancing_tumour")] == [1, 2]
    metrics = client.get_run(runs["brain"].run_id).data.metrics
    for name, slug in zip(NAMES, ("edema", "non_enhancing_tumor", "enhancing_tumour")):
        assert metrics[f"val_dice_class_{slug}"] == pytest.approx(brain_result.val_class_dice[-1][name])
        assert metrics[names.class_dice(names.INTERNAL_TEST_DICE, name)] == pytest.approx(brain_result.internal_test_class_dice[name])
    assert metrics[names.VAL_DICE] == pytest.approx(brain_result.val_dice[-1])
    # the HPO report reads them back and, for the final model, shows a column per set and a row per class
    from proxyhpo.analysis import report
    from proxyhpo.config import default_search_space

    (row,) = report.collect_trials(parent, default_search_space(), uri)
    assert row.class_dice[names.VAL_DICE]["enhancing_tumour"] == pytest.approx(brain_result.val_class_dice[-1]["enhancing tumour"])
    assert set(row.class_dice[names.INTERNAL_TEST_DICE]) == {"edema", "non_enhancing_tumor", "enhancing_tumour"}
    final = row.model_copy(update={"role": names.ROLE_FINAL})
    study = _report_study()
    markdown = report.render_markdown(study, report.summarize([final]), [final])
    edema = row.class_dice[names.VAL_DICE]["edema"], row.class_dice[names.INTERNAL_TEST_DICE]["edema"]
    assert "| class | validation | internal test | external |" in markdown
    assert f"| edema | {edema[0]:.4f} | {edema[1]:.4f} | – |" in markdown


def _report_study():
    from proxyhpo.config import StudyConfig, parse_config

    return parse_config(StudyConfig, {"name": "brain-classes", "data": {"dataset": "/nowhere"}, "training": {"recipe": "demo"}}, "<test>")


def test_label_above_the_plans_classes_is_refused(brain_items: list[DataItem]) -> None:
    with pytest.raises(DataError, match=r"label values go up to 3 but the plan's networks segment 2 classes"):
        cache_volumes(brain_items[:1], RECIPE, "cpu", training=False, num_workers=0)


def test_cases_with_other_channel_counts_are_refused(brain_items: list[DataItem], sphere_cases: list[DataItem]) -> None:
    mixed = [brain_items[0], sphere_cases[0]]
    with pytest.raises(DataError, match=r"is 3D \(one channel\) but train\[0\] .* is 4D with 4 channels"):
        cache_volumes(mixed, RECIPE, "cpu", training=False, num_workers=0, num_classes=4)


def test_plan_classes_must_be_numbered_from_the_background(brain_items: list[DataItem]) -> None:
    from proxyhpo.config import parse_config
    from proxyhpo.errors import ConfigError

    document = {
        "recipe": RECIPE.model_dump(),
        "train": [item.model_dump() for item in brain_items[:1]],
        "val": [item.model_dump() for item in brain_items[1:2]],
        "trials": [{"trial_id": "t", "hyperparameters": {"lr": 1e-3}}],
        "classes": {0: "background", 2: "edema"},
    }
    with pytest.raises(ConfigError, match=r"classes must be numbered 0..K"):
        parse_config(TrialPlan, document, "plan.yaml")
    assert parse_config(TrialPlan, document | {"classes": {}}, "plan.yaml").num_classes == 2  # binary, as before
