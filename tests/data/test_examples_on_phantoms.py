"""The MSD examples pass their config checks against phantom data sets of their shapes (issue 20).

Brain: 4 MR channels (4-D, channels last), 3 tumour classes, nothing merged, NAS; Prostate: (T2, ADC) and
both zones, merged as the paper does (and both zones kept when the example says how); Spleen: one CT
channel, one class. Each example is read as shipped, its data set pointed at a tiny phantom, and the
study's data stage (validation, classes after the merge, split) runs on it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from proxyhpo.config import StudyConfig, parse_config
from proxyhpo.data.msd import load_dataset
from proxyhpo.data.prepare import classes_after_merge, prepare_study_data, study_merge
from proxyhpo.data.synthetic import write_synthetic_dataset


def _example(name: str, dataset: Path, **data: object) -> StudyConfig:
    """The shipped example ``name``, its data set replaced by ``dataset`` (and its external set dropped)."""
    document = yaml.safe_load(resources.files("proxyhpo").joinpath("examples", name).read_text())
    document["data"] = {key: value for key, value in document["data"].items() if key != "external"} | {"dataset": str(dataset), **data}
    return parse_config(StudyConfig, document, f"examples/{name}")


def _as_t2_and_adc(root: Path) -> Path:
    """Turn the single-channel prostate phantom into MSD Task05's shape: 4-D (T2, ADC), channels last."""
    document = json.loads((root / "dataset.json").read_text())
    for entry in document["training"]:
        path = root / entry["image"]
        t2 = nib.load(path)
        array = np.asarray(t2.dataobj).astype(np.int16)
        adc = (array.max() - array).astype(np.int16)  # another contrast on the same grid
        nib.save(nib.Nifti1Image(np.stack([array, adc], axis=-1), t2.affine), path)
    document["modality"] = {"0": "T2", "1": "ADC"}
    (root / "dataset.json").write_text(json.dumps(document))
    return root


def test_nas_brain_example_on_a_brain_phantom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyhpo.training.nas_search import plan_nas

    monkeypatch.setenv("PROXYHPO_HOME", str(tmp_path / "home"))
    root = write_synthetic_dataset("brain", tmp_path / "brain", cases=12, size=32, seed=0).parent
    study = _example("nas-brain.yaml", root)
    data = prepare_study_data(study)
    assert data.labels == {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}
    assert classes_after_merge(data.labels, study_merge(study)) == data.labels  # nothing merged
    plan = plan_nas(study, data)
    assert (plan.space.in_channels, plan.space.out_channels) == (4, 4) and len(plan.folds) == 5


@pytest.fixture(scope="module")
def prostate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _as_t2_and_adc(write_synthetic_dataset("prostate", tmp_path_factory.mktemp("p") / "prostate", cases=12, size=32, seed=0).parent)


def test_prostate_example_merges_the_zones_of_a_two_zone_two_channel_phantom(prostate: Path) -> None:
    study = _example("prostate.yaml", prostate)
    data = prepare_study_data(study)
    assert load_dataset(prostate).channels == 2 and data.labels == {0: "background", 1: "PZ", 2: "TZ"}
    assert classes_after_merge(data.labels, study_merge(study)) == {0: "background", 1: "PZ+TZ"}  # the paper's merge, as the example says


def test_prostate_example_keeps_both_zones_as_its_header_says(prostate: Path) -> None:
    study = _example("prostate.yaml", prostate, merge_labels={1: 1, 2: 2})
    data = prepare_study_data(study)
    assert classes_after_merge(data.labels, study_merge(study)) == {0: "background", 1: "PZ", 2: "TZ"}


def test_spleen_example_on_a_spleen_phantom(tmp_path: Path) -> None:
    root = write_synthetic_dataset("spleen", tmp_path / "spleen", cases=14, size=32, seed=0).parent
    study = _example("spleen.yaml", root)
    data = prepare_study_data(study)
    assert classes_after_merge(data.labels, study_merge(study)) == {0: "background", 1: "spleen"}
    assert len(data.search_ids) >= study.selection.budget


def test_an_example_on_a_phantom_with_an_undeclared_class_is_refused(tmp_path: Path) -> None:
    """The check can fail: a brain phantom whose dataset.json does not declare a class its labels hold is refused."""
    from proxyhpo.errors import DataError

    root = write_synthetic_dataset("brain", tmp_path / "brain", cases=12, size=32, seed=0).parent
    document = json.loads((root / "dataset.json").read_text())
    document["labels"] = {"0": "background", "1": "edema", "2": "non-enhancing tumor"}  # 3 is in every label
    (root / "dataset.json").write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"label values \[3\] not declared"):
        prepare_study_data(_example("nas-brain.yaml", root))
