"""Similarity of multi-channel, multi-class data (issue 20): per channel, combined by the mean; Labelcrop on the union of classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from proxyhpo.config import SimilarityConfig
from proxyhpo.data.msd import load_dataset, validate_dataset
from proxyhpo.data.synthetic import write_synthetic_dataset
from proxyhpo.registry import SIMILARITY_METRICS
from proxyhpo.similarity.preprocess import prepare_volume
from proxyhpo.similarity.proxy_data import compute_similarity

CONFIG = SimilarityConfig(patch=8, bins=8, window=3, margin=1, device="cpu")


def test_each_channel_is_scaled_alone_and_cropped_to_the_union_of_the_classes() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(100, 10, (20, 20, 12)), rng.normal(5000, 900, (20, 20, 12))], axis=-1)  # unrelated units
    label = np.zeros((20, 20, 12), np.uint8)
    label[2:5, 3:6, 2:4] = 1  # two classes far apart: the crop holds both
    label[14:18, 12:17, 8:11] = 3
    cubes = prepare_volume(image, label, spacing=(1, 1, 1), modality="MR", crop="label", patch=8, margin=1)
    assert cubes.shape == (2, 8, 8, 8)
    for c in range(2):
        alone = prepare_volume(image[..., c], (label > 0).astype(np.uint8), spacing=(1, 1, 1), modality="MR", crop="label", patch=8, margin=1)
        np.testing.assert_array_equal(cubes[c], alone)
    one_class = prepare_volume(image[..., 0], (label == 1).astype(np.uint8), spacing=(1, 1, 1), modality="MR", crop="label", patch=8, margin=1)
    assert not np.array_equal(cubes[0], one_class)  # the box is not one class's


@pytest.fixture(scope="module")
def brain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset("brain", tmp_path_factory.mktemp("sim") / "brain", cases=3, size=32, seed=4).parent


@pytest.mark.parametrize("metric", ["mi", "ncc"])
def test_matrix_is_the_mean_over_channels_of_each_channels_matrix(brain: Path, metric: str) -> None:
    dataset = load_dataset(brain)
    result = compute_similarity(dataset, CONFIG, metric=metric, crop="label")
    cubes: list[np.ndarray] = []
    validate_dataset(dataset, on_case=lambda case: cubes.append(prepare_volume(case.image, case.label, spacing=case.spacing, modality="MR", crop="label", patch=8, margin=1)))
    stacked = np.stack(cubes)  # (n, 4, 8, 8, 8)
    engine = SIMILARITY_METRICS[metric](CONFIG)
    per_channel = [engine.matrix(np.ascontiguousarray(stacked[:, c])) for c in range(4)]
    assert result.matrix.shape == (3, 3)
    np.testing.assert_allclose(result.matrix, np.mean(per_channel, axis=0), rtol=1e-6)
    assert not np.allclose(per_channel[0], per_channel[2])  # the channels do differ: the mean is not one of them
    # a study whose recipe keeps one channel chooses its proxy data on that channel alone
    np.testing.assert_allclose(compute_similarity(dataset, CONFIG, metric=metric, crop="label", channel=2).matrix, per_channel[2], rtol=1e-6)


def test_a_study_compares_the_channel_its_recipe_keeps() -> None:
    from proxyhpo.config import StudyConfig, parse_config
    from proxyhpo.similarity.proxy_data import study_channel

    def study(recipe: str) -> StudyConfig:
        return parse_config(StudyConfig, {"name": "s", "data": {"dataset": "/nowhere"}, "training": {"recipe": recipe}}, "<test>")

    assert study_channel(study("prostate")) == 0  # T2 of MSD prostate's (T2, ADC), as training sees it
    assert study_channel(study("demo")) is None  # every channel
