"""What searches cost: one cost model for every comparison report, and the device hours a study's runs used.

A *search* is one pass of an arm: one repeat of a grid study's arm (its whole grid), or one arm of the
automl comparison (its rounds of trials). Its cost is its trials' device hours (failed and stopped trials
too: they used the device) plus choosing its data (``selection_seconds`` of its cell or manifest, once
per search). Speed-ups compare an arm's cost with the reference arm's, as run and at equal pack size
(:func:`~proxyhpo.analysis.statistics.equal_pack_hours`: every trial charged as if it had run alone).

**Work units on a CPU** (issue 18). A CPU's wall-clock hours move with whatever else the machine runs,
so on a CPU a search is also charged in fixed units of work: its trials' optimiser steps (``steps_run``),
each of a named network at a named patch size. One :class:`WorkCalibration` per network, measured in the
same run (:func:`calibrate`: ``steps`` timed training steps on random patches), converts them to
device-hours (:func:`work_hours`); the calibration is recorded beside the result, so the conversion can
be checked and redone. Validation and set-up are not steps, so the work charge leaves them out; on a GPU
the charge is the trials' GPU-hours.

Example:
    >>> cells = [GridCell(arm="proxy", repeat=0, point="p", internal_dice=0.7, external_dice=None, device_hours=0.5, steps=10, pack_size=2)]
    >>> cost = search_cost("proxy", {0: cells}, {0: (360.0, "cuda")})
    >>> cost.hours, cost.equal_pack_hours
    (0.6, 1.1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from proxyhpo.analysis.statistics import GridCell, equal_pack_hours, speedup
from proxyhpo.config import StrictModel

__all__ = ["SearchCost", "RunHours", "WorkCalibration", "calibrate", "search_cost", "with_speedups", "work_hours"]


class SearchCost(StrictModel):
    """What one arm's searches cost, per search (mean over its searches).

    Attributes:
        arm: the arm.
        searches: how many searches (repeats) it ran trials in; 0 when it ran none.
        n_trials: its trials over all its searches.
        trial_hours: device hours of its trials per search (failed and stopped ones too).
        selection_hours: device hours of choosing its data (``selection_seconds / 3600``) per search; 0 for
            all data and for proxy networks.
        selection_device: where the selection ran (``cpu``, ``cuda``; several joined by commas), None when
            it cost nothing.
        hours: ``trial_hours + selection_hours``, the cost of one search as run.
        equal_pack_hours: the trials' hours as if every trial had run alone, per search, plus the selection.
        total_hours: the trials' hours summed over every search (selection not included).
        speedup, speedup_equal_pack: the reference's ``hours`` over this arm's, as run and at equal pack
            size; None without a reference, when either ran no trial, or when this arm cost nothing.
    """

    arm: str
    searches: int
    n_trials: int
    trial_hours: float
    selection_hours: float
    selection_device: str | None
    hours: float
    equal_pack_hours: float
    total_hours: float
    speedup: float | None = None
    speedup_equal_pack: float | None = None


class RunHours(StrictModel):
    """The device hours a study's child runs used, and where they ran.

    Attributes:
        gpu_hours, process_hours: ``gpu_hours`` and ``process_hours`` summed over the runs.
        n_on_gpu, n_on_cpu: trials that ran on a GPU (``gpu_hours`` above 0), and on the CPU alone.
    """

    gpu_hours: float = 0.0
    process_hours: float = 0.0
    n_on_gpu: int = 0
    n_on_cpu: int = 0

    @classmethod
    def of(cls, hours: Iterable[tuple[float, float]], trials: Iterable[tuple[float, float]] | None = None) -> RunHours:
        """The sums of ``(gpu_hours, process_hours)`` over ``hours``; where the runs ran, from ``trials`` (default: the same runs)."""
        summed = list(hours)
        counted = summed if trials is None else list(trials)
        return cls(
            gpu_hours=math.fsum(gpu for gpu, _ in summed),
            process_hours=math.fsum(process for _, process in summed),
            n_on_gpu=sum(gpu > 0 for gpu, _ in counted),
            n_on_cpu=sum(gpu == 0 and process > 0 for gpu, process in counted),
        )

    @property
    def unit(self) -> str:
        """What the hours are, from how many trials ran on a GPU and how many on the CPU."""
        if self.n_on_gpu and self.n_on_cpu:
            return "device hours (GPU-hours where a GPU ran the trial, wall-hours on the CPU otherwise)"
        return "GPU-hours" if self.n_on_gpu else "device wall-hours (CPU)"


def search_cost(arm: str, searches: Mapping[int, Sequence[GridCell]], selection: Mapping[int, tuple[float, str | None]]) -> SearchCost:
    """One arm's cost per search, from its trials and its selections.

    Args:
        arm: the arm.
        searches: search (repeat) -> its trials as :class:`GridCell` records; a search with no trial still
            costs its selection.
        selection: search -> ``(selection_seconds, selection_device)``; a search not in it chose no data.

    Returns:
        The cost, without speed-ups (:func:`with_speedups` adds them).
    """
    keys = sorted(searches)
    n = len(keys)
    trial = [math.fsum(cell.device_hours for cell in searches[key]) for key in keys]
    packed = [equal_pack_hours(searches[key]) for key in keys]
    seconds = [selection.get(key, (0.0, None))[0] for key in keys]
    devices = sorted({str(selection[key][1]) for key, s in zip(keys, seconds, strict=True) if s > 0 and selection[key][1]})
    selection_hours = math.fsum(seconds) / 3600 / n if n else 0.0
    trial_hours = math.fsum(trial) / n if n else 0.0
    return SearchCost(
        arm=arm,
        searches=sum(bool(searches[key]) for key in keys),
        n_trials=sum(len(searches[key]) for key in keys),
        trial_hours=trial_hours,
        selection_hours=selection_hours,
        selection_device=",".join(devices) or None,
        hours=trial_hours + selection_hours,
        equal_pack_hours=(math.fsum(packed) / n if n else 0.0) + selection_hours,
        total_hours=math.fsum(trial),
    )


def with_speedups(costs: Mapping[str, SearchCost], reference: str) -> dict[str, SearchCost]:
    """Every arm's cost with its speed-ups over ``reference``'s (None for every arm when ``reference`` ran no trial).

    An arm that ran no trial gets no speed-up: it has no cost to compare.
    """
    base = costs.get(reference)
    if base is None or not base.n_trials:
        return dict(costs)
    return {
        arm: cost.model_copy(
            update={"speedup": speedup(base.hours, cost.hours), "speedup_equal_pack": speedup(base.equal_pack_hours, cost.equal_pack_hours)}
        )
        if cost.n_trials
        else cost
        for arm, cost in costs.items()
    }


class WorkCalibration(StrictModel):
    """What one training step of a network at a patch size cost on this run's device: the work unit's exchange rate.

    Attributes:
        network: the network's name (``full``, ``proxy-L3``; :attr:`~proxyhpo.config.NetworkConfig.name`).
        patch_size: the training patch, voxels per axis.
        batch: patches per step (``training.batch_size * recipe.num_samples``).
        steps: timed steps per round (after one untimed warm-up step).
        seconds: the fastest round's wall-clock seconds; cpu_seconds: the process's CPU seconds over them.
        device: where they ran (``cpu``, ``cuda``).
        threads: torch's intra-op threads.
    """

    network: str
    patch_size: tuple[int, int, int]
    batch: int
    steps: int
    seconds: float
    cpu_seconds: float
    device: str
    threads: int

    @property
    def seconds_per_step(self) -> float:
        """Wall-clock seconds of one step."""
        return self.seconds / self.steps

    @property
    def unit(self) -> str:
        """The unit it converts: ``trial-steps of full at 32x32x32 (batch 4)``."""
        return f"trial-steps of {self.network} at {'x'.join(map(str, self.patch_size))} (batch {self.batch})"


def calibrate(network: Any, patch_size: Sequence[int], batch: int, steps: int = 5, device: str = "cpu", rounds: int = 3) -> WorkCalibration:
    """Time ``steps`` training steps (forward, Dice-free cross-entropy loss, backward, Adam) of ``network`` on random patches.

    The fastest of ``rounds`` rounds is kept, as :mod:`timeit` advises: other load on a shared machine
    only ever makes a round slower (a calibration taken beside a test run once read 15 times the quiet
    machine's seconds per step), so the minimum is the closest to what the step itself costs.

    Args:
        network: a :class:`~proxyhpo.config.NetworkConfig`.
        patch_size: the patch, voxels per axis, shape ``(3,)``.
        batch: patches per step.
        steps: steps timed per round, after one warm-up step (allocations, kernel choice) that is not.
        device: ``cpu`` or ``cuda``.
        rounds: rounds of ``steps`` steps; the fastest is recorded.
    """
    import time

    import torch

    from proxyhpo.networks import build_network

    if steps < 1 or rounds < 1:
        raise ValueError(f"steps and rounds must be >= 1, got {steps} and {rounds}")
    generator = torch.Generator().manual_seed(0)
    model = build_network(network, in_channels=1, out_channels=2).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    image = torch.randn(batch, 1, *patch_size, generator=generator).to(device)
    label = (torch.rand(batch, *patch_size, generator=generator) > 0.5).long().to(device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        out = model(image)
        heads = out.unbind(1) if out.ndim == image.ndim + 1 else (out,)  # a deep-supervised network (dynunet): every head, as trials train
        sum(torch.nn.functional.cross_entropy(head, label) for head in heads).backward()
        optimiser.step()

    def timed_round() -> tuple[float, float]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu

    step()
    seconds, cpu_seconds = min(timed_round() for _ in range(rounds))
    return WorkCalibration(
        network=network.name, patch_size=tuple(int(p) for p in patch_size), batch=batch, steps=steps,
        seconds=seconds, cpu_seconds=cpu_seconds, device=device, threads=torch.get_num_threads(),
    )


def work_hours(steps_by_network: Mapping[str, float], calibrations: Mapping[str, WorkCalibration]) -> float:
    """Device-hours of the given trial-steps, each network's steps at its calibration's seconds per step.

    Args:
        steps_by_network: network name -> optimiser steps its trials ran.
        calibrations: network name -> its :class:`WorkCalibration`.

    Raises:
        ValueError: for steps of a network without a calibration.

    Example:
        >>> full = WorkCalibration(network="full", patch_size=(32, 32, 32), batch=4, steps=10, seconds=36.0, cpu_seconds=70.0, device="cpu", threads=2)
        >>> work_hours({"full": 1000}, {"full": full})
        1.0
    """
    missing = sorted(name for name, steps in steps_by_network.items() if steps and name not in calibrations)
    if missing:
        raise ValueError(f"no calibration for network(s) {missing}: calibrate every network the trials trained")
    return math.fsum(steps * calibrations[name].seconds_per_step for name, steps in steps_by_network.items() if steps) / 3600
