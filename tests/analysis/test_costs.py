"""The cost model's work units: a calibration measured on this machine, and trial-steps converted by it."""

from __future__ import annotations

import pytest

from proxyhpo.analysis.costs import WorkCalibration, calibrate, work_hours
from proxyhpo.config import NetworkConfig


def _calibration(network: str, seconds_per_step: float) -> WorkCalibration:
    return WorkCalibration(network=network, patch_size=(32, 32, 32), batch=4, steps=10, seconds=10 * seconds_per_step, cpu_seconds=0.0, device="cpu", threads=2)


def test_work_hours_charge_each_networks_steps_at_its_own_rate() -> None:
    calibrated = {"full": _calibration("full", 1.8), "proxy-L3": _calibration("proxy-L3", 0.36)}
    # 1000 full steps (1800 s) and 5000 proxy steps (1800 s): one hour; a network with no steps needs no calibration
    assert work_hours({"full": 1000, "proxy-L3": 5000, "proxy-L4": 0}, calibrated) == pytest.approx(1.0)
    assert calibrated["full"].unit == "trial-steps of full at 32x32x32 (batch 4)"
    with pytest.raises(ValueError, match=r"no calibration for network\(s\) \['proxy-L4'\]"):
        work_hours({"proxy-L4": 10}, calibrated)


def test_calibrate_times_real_training_steps_of_the_named_network() -> None:
    proxy = calibrate(NetworkConfig.proxy(3), (16, 16, 16), batch=1, steps=2)
    assert (proxy.network, proxy.patch_size, proxy.batch, proxy.steps, proxy.device) == ("proxy-L3", (16, 16, 16), 1, 2, "cpu")
    assert proxy.seconds > 0 and proxy.seconds_per_step == pytest.approx(proxy.seconds / 2)
    # more work per step costs more: eight times the voxels
    bigger = calibrate(NetworkConfig.proxy(3), (32, 32, 32), batch=1, steps=2)
    assert bigger.seconds_per_step > proxy.seconds_per_step
