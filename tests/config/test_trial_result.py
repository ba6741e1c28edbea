"""Trial results: JSON round trip, atomic writes and read errors."""

from __future__ import annotations

import pytest

from proxyhpo.config import HyperParameters, TrialResult, TrialResults, TrialState
from proxyhpo.errors import ConfigError, StorageError


def _results() -> list[TrialResult]:
    hyper = HyperParameters(lr=4e-4, optimizer="adamax", intensity_shift_prob=0.25)
    ok = TrialResult(
        trial_id="r1-t0", state=TrialState.COMPLETE, hyperparameters=hyper, network="proxy-L3", data_label="mi-8", round=1,
        epochs_run=4, val_epochs=[2, 4], val_dice=[0.41, 0.73], final_val_dice=0.73, best_val_dice=0.73, best_epoch=4,
        test_dice=0.69, wall_seconds=12.5, gpu_hours=0.0012, peak_gpu_mem_bytes=123456789, data_wait_fraction=0.04,
        pack_size=16, device="cuda",
    )
    bad = TrialResult(trial_id="r1-t1", state=TrialState.FAILED, fail_reason="loss became nan at step 3", hyperparameters=hyper, network="full", epochs_run=1)
    return [ok, bad]


def _write(path, results: list[TrialResult]):
    return TrialResults(results=tuple(results)).write(path)


def test_round_trip(tmp_path):
    path = _write(tmp_path / "out" / "trial.results.json", _results())
    assert path == tmp_path / "out" / "trial.results.json"
    assert TrialResults.read(path).results == tuple(_results())
    assert sorted(p.name for p in path.parent.iterdir()) == ["trial.results.json"]  # no temporary left
    assert '"state": "FAILED"' in path.read_text()


def test_overwrite_is_atomic_replace(tmp_path):
    path = tmp_path / "r.json"
    _write(path, _results())
    _write(path, _results()[:1])
    assert [r.trial_id for r in TrialResults.read(path).results] == ["r1-t0"]


def test_read_errors(tmp_path):
    with pytest.raises(StorageError, match=r"missing.json: cannot be read \(No such file or directory\)"):
        TrialResults.read(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"results": [{"trial_id": 1}]}')
    with pytest.raises(ConfigError, match=r"x.json: key 'results.0.trial_id': Input should be a valid string \(got 1\)"):
        TrialResults.read(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{oops")
    with pytest.raises(ConfigError, match=r"y.json: is not a TrialResults JSON file \(.*\); fix: regenerate it with proxyhpo train"):
        TrialResults.read(tmp_path / "y.json")
