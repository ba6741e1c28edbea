"""Trial results: JSON round trip and atomic writes."""

from __future__ import annotations

import pytest

from proxyhpo.errors import StorageError
from proxyhpo.training.plan import HyperParameters
from proxyhpo.training.result import TrialResult, TrialState, read_results, write_results


def _results() -> list[TrialResult]:
    hyper = HyperParameters(lr=4e-4, optimizer="adamax", intensity_shift_prob=0.25)
    ok = TrialResult(
        trial_id="r1-t0", state=TrialState.COMPLETE, hyper=hyper, network="proxy-L3", data_label="mi-8", round=1,
        epochs_run=4, val_epochs=[2, 4], val_dice=[0.41, 0.73], final_val_dice=0.73, best_val_dice=0.73, best_epoch=4,
        test_dice=0.69, wall_seconds=12.5, gpu_hours=0.0012, peak_gpu_mem_bytes=123456789, data_wait_fraction=0.04,
        pack_size=16, device="cuda",
    )
    bad = TrialResult(trial_id="r1-t1", state=TrialState.FAILED, fail_reason="loss became nan at step 3", hyper=hyper, network="full", epochs_run=1)
    return [ok, bad]


def test_round_trip(tmp_path):
    path = write_results(tmp_path / "out" / "trial.results.json", _results())
    assert read_results(path) == _results()
    assert sorted(p.name for p in path.parent.iterdir()) == ["trial.results.json"]  # no temporary left
    assert '"state": "FAILED"' in path.read_text()


def test_overwrite_is_atomic_replace(tmp_path):
    path = tmp_path / "r.json"
    write_results(path, _results())
    write_results(path, _results()[:1])
    assert [r.trial_id for r in read_results(path)] == ["r1-t0"]


def test_read_errors(tmp_path):
    with pytest.raises(StorageError, match="file does not exist"):
        read_results(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"results": [{"trial_id": 1}]}')
    with pytest.raises(StorageError, match="is not a trial results file"):
        read_results(tmp_path / "x.json")
