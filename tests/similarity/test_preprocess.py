"""Tests of the volume preparation: cubic patch, [0, 1] scaling, CT window, MR percentiles, label crop."""

from __future__ import annotations

import numpy as np
import pytest

from proxyhpo.similarity import CT_HU_WINDOW, label_bounding_box, prepare_volume, prepare_volumes

SPACING = (1.5, 1.5, 2.0)


def _ct_case(shape=(40, 36, 30)):
    """A HU ramp along axis 0 (-100..250, crossing the whole CT window) and a box label off-centre."""
    d = shape[0]
    image = np.broadcast_to(np.linspace(-100.0, 250.0, d)[:, None, None], shape).copy()
    label = np.zeros(shape, dtype=np.uint8)
    label[10:20, 20:30, 3:11] = 1
    return image, label


@pytest.mark.parametrize("crop", ["none", "label"])
@pytest.mark.parametrize("patch", [8, 17])
def test_shape_dtype_and_range(crop, patch):
    image, label = _ct_case()
    out = prepare_volume(image, label, spacing=SPACING, modality="CT", crop=crop, patch=patch)
    assert out.shape == (patch, patch, patch)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_ct_window_clips_and_scales():
    """Values at or below -57 HU map to 0, at or above 164 HU to 1, and in between linearly."""
    image = np.full((8, 8, 8), -1000.0)
    image[4:] = 1000.0
    image[:, :, 4:] = 53.5  # the middle of the window
    out = prepare_volume(image, None, spacing=SPACING, modality="CT", crop="none", patch=8)
    np.testing.assert_allclose(out[:2, :, :2], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[6:, :, :2], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 6:], 0.5, atol=1e-6)
    assert CT_HU_WINDOW == (-57.0, 164.0)


def test_custom_hu_window():
    image = np.full((6, 6, 6), 100.0)
    out = prepare_volume(image, None, spacing=SPACING, modality="CT", crop="none", patch=6, hu_window=(0.0, 200.0))
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_mr_percentile_scaling():
    rng = np.random.default_rng(0)
    image = rng.normal(300.0, 50.0, (20, 20, 20))
    image[0, 0, 0] = 1e6  # an outlier must not squash the scale
    out = prepare_volume(image, None, spacing=(1, 1, 1), modality="MR", crop="none", patch=20)
    assert out.min() == 0.0 and out.max() == 1.0
    # about 1% of voxels sit at each end after the 1st/99th percentile scaling (less after smoothing)
    assert 0.2 < np.median(out) / 1.0 < 0.8


def test_mr_constant_volume_is_zero():
    out = prepare_volume(np.full((6, 6, 6), 7.0), None, spacing=(1, 1, 1), modality="MR", crop="none", patch=4)
    np.testing.assert_array_equal(out, 0.0)


def test_label_crop_really_crops_around_label():
    """With margin 0, the cropped patch spans only the label's part of the HU ramp."""
    image, label = _ct_case()
    ramp = np.clip((np.linspace(-100.0, 250.0, 40) + 57.0) / 221.0, 0, 1)
    full = prepare_volume(image, label, spacing=SPACING, modality="CT", crop="none", patch=16)
    cropped = prepare_volume(image, label, spacing=SPACING, modality="CT", crop="label", patch=16, margin=0)
    # the label covers rows 10..19 of the ramp (HU -10..70); the whole volume covers 0..39
    assert full.min() == pytest.approx(0.0, abs=1e-4) and full.max() == pytest.approx(1.0, abs=1e-4)
    assert cropped.min() >= ramp[10] - 1e-5 and cropped.max() <= ramp[19] + 1e-5
    assert cropped.max() - cropped.min() > 0.5 * (ramp[19] - ramp[10])


def test_label_bounding_box_margin_is_clipped():
    _, label = _ct_case()
    assert label_bounding_box(label, 0) == ((10, 20, 3), (20, 30, 11))
    assert label_bounding_box(label, 8) == ((2, 12, 0), (28, 36, 19))


def test_margin_changes_the_crop():
    image, label = _ct_case()
    a = prepare_volume(image, label, spacing=SPACING, modality="CT", crop="label", patch=8, margin=0)
    b = prepare_volume(image, label, spacing=SPACING, modality="CT", crop="label", patch=8, margin=4)
    assert b.min() < a.min()


def test_prepare_volumes_stacks_and_names_the_bad_case():
    image, label = _ct_case()
    out = prepare_volumes([(image, label, SPACING)] * 3, modality="CT", crop="label", patch=6)
    assert out.shape == (3, 6, 6, 6) and out.dtype == np.float32
    empty = np.zeros_like(label)
    with pytest.raises(ValueError, match=r"cases\[1\]: label has no foreground voxel"):
        prepare_volumes(iter([(image, label, SPACING), (image, empty, SPACING)]), modality="CT", crop="label", patch=6)
    with pytest.raises(ValueError, match="cases is empty"):
        prepare_volumes([], modality="CT", crop="none")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label": None, "crop": "label"}, "label is None, but crop='label'"),
        ({"label": "empty"}, "label has no foreground voxel"),
        ({"label": np.ones((3, 3, 3))}, "label must have the image's shape"),
        ({"modality": "PET"}, "modality must be one of"),
        ({"crop": "box"}, "crop must be one of"),
        ({"patch": 0}, "patch must be an integer >= 1"),
        ({"margin": -1}, "margin must be an integer >= 0"),
        ({"spacing": (1.0, 0.0, 1.0)}, "spacing must be three positive numbers"),
        ({"spacing": (1.0, 1.0)}, "spacing must be three positive numbers"),
        ({"hu_window": (100.0, -100.0)}, "hu_window must be"),
        ({"image": np.zeros((4, 4))}, "image must be a non-empty 3D array"),
        ({"image": np.full((10, 10, 10), np.nan)}, "image holds NaN"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    image, label = _ct_case((10, 10, 10))
    label[:] = 0
    label[2:4, 2:4, 2:4] = 1
    args = {"image": image, "label": label, "spacing": SPACING, "modality": "CT", "crop": "label", "patch": 4}
    if isinstance(kwargs.get("label"), str):
        kwargs = {"label": np.zeros_like(label)}
    args |= kwargs
    with pytest.raises(ValueError, match=message):
        prepare_volume(**args)
