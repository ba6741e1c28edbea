"""A tabular search benchmark: the trainer's real learning curves over a grid, recorded once, replayed by the thousand.

``proxyhpo bench table CONFIG --out TABLE`` (:func:`record_table`) trains every point of a grid over the study's
search space (every categorical choice times ``grid.points`` values of each range) with ``grid.seeds`` training
seeds per point, in the study's proxy setting (its proxy data, proxy network, recipe and batch size), through the
study's own trial plan (:func:`~proxyhpo.training.study_trials.build_search_plan`) and packs
(:class:`~proxyhpo.training.pack_run.PackRun`), and keeps every trial's validation Dice, its Dice on the untouched
held-out cases and its training loss after every epoch. :class:`Table` reads it back, and
:func:`replay_search` replays a strategy on it (``proxyhpo bench search --table TABLE``,
:func:`proxyhpo.search.bench.run_table_bench`).

The file is one compressed ``.npz``: the arrays below and a ``meta`` JSON string (the grid's values, the
config, the merged study, the commit and the command that made it, the machine). Shapes: ``P`` grid points,
``S`` seeds, ``E`` epochs.

- ``val_dice``, ``test_dice``, ``train_loss``: ``(P, S, E)`` float32, NaN after a failure;
- ``seconds``: ``(P, S)`` the process seconds each trial was charged (its pack's share; for reference only);
- ``index``: ``(P, D)`` each point's value index per hyper-parameter (the grid's order, the space's).

Cost is counted in trial-steps: a trial that trained ``e`` epochs cost ``e * steps_per_epoch`` (``meta``); a
trial-step is one optimiser step of one trial, whatever the machine or its load.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from proxyhpo.config import Categorical, StudyConfig
from proxyhpo.config.search_bench import TableConfig
from proxyhpo.errors import ConfigError, DataError

__all__ = ["Table", "grid_values", "table_study", "record_table", "merge_tables", "replay_search", "replay_pack", "pick", "regrets", "ReplayTrial", "TABLE_FORMAT"]

log = logging.getLogger(__name__)

#: the table file's format version (``meta["format"]``)
TABLE_FORMAT = 1


def grid_values(study: StudyConfig, points: Mapping[str, int]) -> dict[str, list[Any]]:
    """The grid's values per hyper-parameter, in the search space's order.

    A categorical keeps all its choices; a range gets ``points[name]`` (default 5) values evenly spread on its
    scale, both ends included (``from_unit`` of ``linspace(0, 1, n)``: log-spaced for a ``log_uniform``).

    Raises:
        ConfigError: when ``points`` names a hyper-parameter the space lacks or a categorical one.
    """
    space = study.search.space
    for name in points:
        if name not in space.names or isinstance(space[name], Categorical):
            ranges = [n for n in space.names if not isinstance(space[n], Categorical)]
            raise ConfigError("grid.points", f"names {name!r}, which is not a range of the study's search space", f"name one of {ranges}")
    values: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, Categorical):
            values[name] = list(dist.choices)
        else:
            n = points.get(name, 5)
            values[name] = [float(dist.from_unit(u)) for u in np.linspace(0.0, 1.0, n)]
    return values


def table_study(config: TableConfig) -> StudyConfig:
    """The study the table trains: the config's study with its overrides, validated every epoch, no early stopping."""
    from proxyhpo.search._base import study_with
    from proxyhpo.search.bench import _merged
    from proxyhpo.config import load_yaml, parse_config

    document = _merged(load_yaml(config.study), config.overrides)
    study = parse_config(StudyConfig, document, config.study)
    study = study.model_copy(update={"data": study.data.with_absolute_paths()})
    study = study_with(study, "training", val_every=1, pack_size=config.grid.pack_size)
    return study_with(study, "search", early_stopping=None)


def _commit() -> str:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "components"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Table:
    """A recorded table, read back.

    Attributes:
        names: the hyper-parameters, in the search space's order; ``values``: each one's grid values.
        index: ``(P, D)`` value indices of each point.
        val_dice, test_dice, train_loss: ``(P, S, E)`` per epoch (test: the untouched held-out cases).
        seconds: ``(P, S)`` process seconds charged to each trial.
        meta: the rest (``steps_per_epoch``, ``epochs``, ``space``, ``study``, ``config``, ``commit``, ``command``...).
    """

    names: list[str]
    values: dict[str, list[Any]]
    index: np.ndarray
    val_dice: np.ndarray
    test_dice: np.ndarray
    train_loss: np.ndarray
    seconds: np.ndarray
    meta: dict[str, Any]

    @property
    def points(self) -> int:
        return int(self.index.shape[0])

    @property
    def seeds(self) -> int:
        return int(self.val_dice.shape[1])

    @property
    def epochs(self) -> int:
        return int(self.val_dice.shape[2])

    @property
    def steps_per_epoch(self) -> int:
        return int(self.meta["steps_per_epoch"])

    @property
    def trial_steps(self) -> int:
        """Trial-steps of one trial that trains all its epochs: the unit of a budget in trials."""
        return self.epochs * self.steps_per_epoch

    def study(self) -> StudyConfig:
        """The study the table was recorded with (its search space is the table's)."""
        return StudyConfig.model_validate(self.meta["study"])

    def hyperparameters(self, point: int) -> dict[str, Any]:
        """The hyper-parameters of grid point ``point``."""
        return {name: self.values[name][int(i)] for name, i in zip(self.names, self.index[point])}

    def checkpoint_test_dice(self) -> np.ndarray:
        """``(P, S)`` each trial's test Dice at its best validation epoch (the weights the trainer keeps); 0 when it failed."""
        val = np.where(np.isfinite(self.val_dice), self.val_dice, -np.inf)
        best = val.argmax(axis=2)
        test = np.take_along_axis(self.test_dice, best[..., None], axis=2)[..., 0]
        return np.where(np.isfinite(test) & np.isfinite(val.max(axis=2)), test, 0.0)

    def config_test_dice(self) -> np.ndarray:
        """``(P,)`` a configuration's test Dice: the mean over its seeds of :meth:`checkpoint_test_dice`.

        The regret of a search's pick is the best of these minus the pick's.
        """
        return self.checkpoint_test_dice().mean(axis=1)

    def snap(self, hyperparameters: Mapping[str, Any]) -> int:
        """The grid point nearest ``hyperparameters``: per hyper-parameter the nearest value on its scale (the unit
        interval of its distribution: log scale for a ``log_uniform``), the exact choice for a categorical.

        Raises:
            ValueError: for a missing hyper-parameter or a choice the grid lacks.
        """
        space = self.study().search.space if not hasattr(self, "_space") else self._space  # type: ignore[has-type]
        self._space = space
        wanted = []
        for name in self.names:
            if name not in hyperparameters:
                raise ValueError(f"proposal lacks {name!r}")
            dist = space[name]
            value = hyperparameters[name]
            if isinstance(dist, Categorical):
                wanted.append(list(self.values[name]).index(value))
            else:
                units = np.array([dist.to_unit(v) for v in self.values[name]])
                wanted.append(int(np.abs(units - dist.to_unit(float(value))).argmin()))
        if not hasattr(self, "_lookup"):
            self._lookup = {tuple(int(i) for i in row): p for p, row in enumerate(self.index)}
        return self._lookup[tuple(wanted)]

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Table:
        """Read a table file.

        Raises:
            DataError: when it is missing or not a table.
        """
        arrays, meta = _read_raw(path)
        recorded = _recorded(meta, arrays["val_dice"].shape[1])
        if not recorded:
            raise DataError(str(path), "holds no recorded seed yet", "wait for the recording's first seed")
        for key in _CURVES:
            arrays[key] = arrays[key][:, recorded]  # a recording under way, or one seed of it: the seeds written so far
        return cls(
            names=list(meta["names"]),
            values={k: list(v) for k, v in meta["values"].items()},
            index=arrays["index"],
            val_dice=arrays["val_dice"].astype(np.float64),
            test_dice=arrays["test_dice"].astype(np.float64),
            train_loss=arrays["train_loss"].astype(np.float64),
            seconds=arrays["seconds"].astype(np.float64),
            meta=meta,
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the table, compressed (float32 curves), atomically."""
        meta = self.meta | {"names": self.names, "values": self.values, "format": TABLE_FORMAT, "seeds_recorded": list(range(self.seeds))}
        arrays = {"index": self.index, "val_dice": self.val_dice, "test_dice": self.test_dice, "train_loss": self.train_loss, "seconds": self.seconds}
        return _write_raw(path, arrays, meta)


_CURVES = ("val_dice", "test_dice", "train_loss", "seconds")


def _recorded(meta: Mapping[str, Any], seeds: int) -> list[int]:
    """The seed columns a table file holds (older files: the first ``seeds_done``)."""
    if "seeds_recorded" in meta:
        return sorted(int(s) for s in meta["seeds_recorded"])
    return list(range(int(meta.get("seeds_done", seeds))))


def _read_raw(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(str(path), f"is not a readable table ({exc})", "record one with `proxyhpo bench table CONFIG --out TABLE`") from None
    if "meta" not in arrays or any(key not in arrays for key in ("index", *_CURVES)):
        raise DataError(str(path), "lacks a table's entries (meta, index, curves)", "record one with `proxyhpo bench table CONFIG --out TABLE`")
    return arrays, json.loads(str(arrays.pop("meta")))


def _write_raw(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    from proxyhpo.storage import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                meta=np.array(json.dumps(dict(meta))),
                index=np.asarray(arrays["index"]).astype(np.int16),
                **{key: np.asarray(arrays[key]).astype(np.float32) for key in _CURVES},
            )
    return path


def merge_tables(parts: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Table:
    """One table from recordings of the same config that hold different seeds (``proxyhpo bench table --seed K``).

    Raises:
        DataError: when the parts were recorded with different configs or grids.
    """
    merged: dict[str, np.ndarray] | None = None
    meta: dict[str, Any] = {}
    recorded: set[int] = set()
    cpu = wall = 0.0
    for part in parts:
        arrays, part_meta = _read_raw(part)
        if merged is None:
            merged, meta = {key: value.copy() for key, value in arrays.items()}, dict(part_meta)
        elif part_meta.get("config") != meta.get("config") or arrays["val_dice"].shape != merged["val_dice"].shape:
            raise DataError(str(part), f"was recorded with another config or grid than {parts[0]}", "merge only the seeds of one table config")
        for seed in _recorded(part_meta, arrays["val_dice"].shape[1]):
            for key in _CURVES:
                merged[key][:, seed] = arrays[key][:, seed]
            recorded.add(seed)
        cpu += float(part_meta.get("cpu_seconds", 0.0))
        wall = max(wall, float(part_meta.get("wall_seconds", 0.0)))
    assert merged is not None
    meta |= {"seeds_recorded": sorted(recorded), "cpu_seconds": cpu, "wall_seconds": wall, "merged_from": [str(p) for p in parts]}
    meta.pop("seeds_done", None)
    _write_raw(out, merged, meta)
    return Table.read(out)


# --------------------------------------------------------------------------------------------------- recording
def _recording_pack_run() -> type:
    """A :class:`~proxyhpo.training.pack_run.PackRun` that also scores every validated trial on the untouched test
    cases with its current weights (the pack tests only the best weights at the end) and keeps its epoch's loss."""
    from proxyhpo.training.evaluation import evaluate_pack
    from proxyhpo.training.pack_run import PackRun

    class RecordingPackRun(PackRun):
        curves: dict[str, dict[int, tuple[float, float, float]]]

        def validate(self, members: Sequence[int]) -> None:
            super().validate(members)
            members = [i for i in members if i not in self.pack.failed]
            scores = evaluate_pack(self.pack, self.volumes["internal_test"], self.recipe, what="internal test", members=members) if members else {}
            # recording the test curve is the table's cost, not the trial's: it is charged to no one
            for i, dice in scores.items():
                trial = self.trials[i]
                loss = trial.epoch_loss if trial.epoch_loss is not None else math.nan
                self.curves.setdefault(trial.spec.trial_id, {})[trial.epochs_run] = (trial.val_dice[-1], dice, loss)

    return RecordingPackRun


def _train_recording(plan: Any, progress: bool) -> tuple[list[Any], dict[str, dict[int, tuple[float, float, float]]]]:
    """Train ``plan`` in packs of ``plan.pack_size`` (no early stopping), recording every trial's curves."""
    from proxyhpo.devices import resolve_device
    from proxyhpo.training.data import cache_volumes

    recipe = plan.resolved_recipe()
    device = resolve_device(plan.device, source="table plan")
    kw = dict(cache_dir=plan.cache_dir, num_workers=plan.num_workers)
    t0 = time.perf_counter()
    volumes = {
        "train": cache_volumes(plan.train, recipe, device, training=True, what="train", **kw),
        "val": cache_volumes(plan.val, recipe, device, training=False, what="val", **kw),
        "internal_test": cache_volumes(plan.internal_test, recipe, device, training=False, what="internal test", **kw),
        "test": [],
    }
    overhead = (time.perf_counter() - t0) / len(plan.trials)
    runner = _recording_pack_run()
    curves: dict[str, dict[int, tuple[float, float, float]]] = {}
    size = int(plan.pack_size)
    results = []
    for start in range(0, len(plan.trials), size):
        chunk = plan.trials[start : start + size]
        run = runner(chunk, plan, recipe, device, volumes, slots=size, chunk_size=size, overhead_seconds=overhead, on_epoch=None, on_step=None, progress=False)
        run.curves = curves
        results += run.run()
    return results, curves


def record_table(
    config: TableConfig, out: str | os.PathLike[str], *, only_seeds: Sequence[int] | None = None, command: str | None = None, progress: bool = True
) -> Table:
    """``proxyhpo bench table CONFIG --out TABLE``: train the grid, write the table to ``out``, return it.

    Seed ``s`` of every point trains as the pipeline trains the point's proposal ``s * P + p`` (its own
    initialisation and data order, :func:`~proxyhpo.training.study_trials.build_search_plan`). Seeds are
    trained one after another and the partial table is written after each, so a stopped recording keeps
    them; a rerun with the same ``out`` records only the seeds it lacks. ``only_seeds`` records just those (one
    process per seed, each into its own file, joined by :func:`merge_tables`: the same CPU time, sooner).

    Raises:
        ConfigError, DataError: for a study or data set that does not validate.
    """
    from proxyhpo.config import PackSpec, Proposal
    from proxyhpo.data.prepare import entries_for, prepare_study_data
    from proxyhpo.data.msd import load_dataset
    from proxyhpo.similarity.proxy_data import select_for_study
    from proxyhpo.training.study_trials import build_search_plan

    out = Path(out)
    started = time.perf_counter()
    cpu_started = time.process_time()
    study = table_study(config)
    values = grid_values(study, config.grid.points)
    names = list(values)
    index = np.array(list(itertools.product(*(range(len(values[n])) for n in names))), dtype=np.int64)
    points, seeds, epochs = len(index), config.grid.seeds, study.training.epochs
    data = prepare_study_data(study)
    manifest = select_for_study(study, data)
    dataset = load_dataset(data.dataset)
    shape = (points, seeds, epochs)
    arrays = {"index": index, "val_dice": np.full(shape, np.nan), "test_dice": np.full(shape, np.nan), "train_loss": np.full(shape, np.nan), "seconds": np.zeros((points, seeds))}
    recorded: list[int] = []
    previous_meta: dict[str, Any] = {}
    if out.exists():
        previous, previous_meta = _read_raw(out)
        if previous_meta.get("config") == config.model_dump(mode="json") and previous["val_dice"].shape == shape:
            recorded = _recorded(previous_meta, seeds)
            for key in _CURVES:
                arrays[key][:, recorded] = previous[key][:, recorded]
            log.warning("%s: continuing; seeds %s are recorded", out, recorded)
    todo = [seed for seed in (range(seeds) if only_seeds is None else only_seeds) if seed not in recorded]
    for seed in todo:
        if not 0 <= seed < seeds:
            raise ConfigError("--seed", f"{seed} is not one of the table's seeds 0..{seeds - 1}", "give a seed below grid.seeds")
    steps_per_epoch = int(previous_meta.get("steps_per_epoch", 0)) if recorded else 0
    val, test, loss, seconds = arrays["val_dice"], arrays["test_dice"], arrays["train_loss"], arrays["seconds"]
    for seed in todo:
        proposals = [
            Proposal(proposal_id=seed * points + p, round=seed, hyperparameters={n: values[n][int(i)] for n, i in zip(names, index[p])}, log_prob=0.0)
            for p in range(points)
        ]
        plan = build_search_plan(study, data, manifest, PackSpec(round=seed, pack_index=0, proposals=tuple(proposals)))
        plan = type(plan).model_validate(plan.model_dump() | {"internal_test": entries_for(dataset, data.holdout_ids), "early_stopping": None, "val_every": 1})
        t_seed = time.perf_counter()
        results, curves = _train_recording(plan, progress)
        for p, result in enumerate(results):
            for epoch, (v, t, l) in curves.get(result.trial_id, {}).items():
                val[p, seed, epoch - 1], test[p, seed, epoch - 1], loss[p, seed, epoch - 1] = v, t, l
            seconds[p, seed] = result.process_hours * 3600.0 + result.gpu_hours * 3600.0
            if result.epochs_run == epochs and result.steps_run:
                steps_per_epoch = result.steps_run // epochs
        meta = {
            "format": TABLE_FORMAT,
            "steps_per_epoch": steps_per_epoch,
            "epochs": epochs,
            "seeds_recorded": sorted([*recorded, seed]),
            "space": study.search.space.model_dump(mode="json"),
            "study": study.model_dump(mode="json"),
            "config": config.model_dump(mode="json"),
            "commit": _commit(),
            "command": command or " ".join(["proxyhpo", *sys.argv[1:]]),
            "data": {"train": list(manifest.train_ids), "val": list(manifest.val_ids), "test": list(data.holdout_ids)},
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
            "wall_seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started,
        }
        recorded.append(seed)
        _write_raw(out, arrays, meta | {"names": names, "values": values})
        if progress:
            print(
                f"seed {seed + 1}/{seeds}: {points} trials in {time.perf_counter() - t_seed:.0f} s; "
                f"best val Dice {np.nanmax(val[:, seed]):.3f}, median final val Dice {np.nanmedian(val[:, seed, -1]):.3f}",
                file=sys.stderr,
                flush=True,
            )
    return Table.read(out)


# ------------------------------------------------------------------------------------------------------ replay
@dataclass(frozen=True)
class ReplayTrial:
    """One trial of a replayed search, as the table gave it.

    Attributes:
        proposal_id, batch: the strategy's proposal and the batch (round) it was asked in.
        point, seed: the grid point it snapped to and the table's training seed drawn for it.
        state: ``COMPLETE``, ``STOPPED`` (early stopping, at ``epochs_run``) or ``FAILED``.
        epochs_run: epochs it trained; ``steps``: its cost in trial-steps (``epochs_run * steps_per_epoch``).
        val_dice: its Dice at its last validation (None when it failed).
        cumulative_steps: the search's trial-steps up to and including it, in proposal order.
    """

    proposal_id: int
    batch: int
    point: int
    seed: int
    state: str
    epochs_run: int
    steps: int
    val_dice: float | None
    cumulative_steps: int


def replay_study(table: Table, config: Any, strategy: type[Any]) -> StudyConfig:
    """The study ``strategy`` (a registered class) searches in a replay: the table's, with the replay's batch size,
    validation epochs and (for a strategy that stops trials) early stopping."""
    from proxyhpo.config.early_stopping import EarlyStoppingConfig
    from proxyhpo.search._base import study_with

    study = study_with(table.study(), "training", val_every=min(config.val_every, table.epochs))
    rungs = config.early_stopping or EarlyStoppingConfig(min_epochs=max(1, table.epochs // 5), reduction_factor=3)
    return study_with(study, "search", proposals_per_round=config.proposals_per_batch, early_stopping=strategy.bench_early_stopping(rungs))


def _result(table: Table, proposal: Any, point: int, seed: int, epochs_run: int, state: str, validated: Sequence[int]) -> Any:
    """The :class:`~proxyhpo.config.TrialResult` the trainer would have returned for this replayed trial."""
    from proxyhpo.config import TrialResult
    from proxyhpo.tracking import names
    from proxyhpo.training.study_trials import hyperparameters_from

    curve = table.val_dice[point, seed]
    epochs = [e for e in validated if e <= epochs_run and math.isfinite(curve[e - 1])]
    dice = [float(curve[e - 1]) for e in epochs]
    ok = state != "FAILED" and bool(dice)
    best = int(np.argmax(dice)) if ok else None
    return TrialResult(
        trial_id=proposal.trial_id,
        state=state,
        stopped_at_epoch=epochs_run if state == "STOPPED" else None,
        hyperparameters=hyperparameters_from(table.hyperparameters(point)),
        network="replay",
        seed=seed,
        round=proposal.round,
        tags={names.PROPOSAL_ID_KEY: str(proposal.proposal_id)},
        epochs_run=epochs_run,
        steps_run=epochs_run * table.steps_per_epoch,
        val_epochs=epochs,
        val_dice=dice,
        final_val_dice=dice[-1] if ok else None,
        best_val_dice=dice[best] if best is not None else None,
        best_epoch=epochs[best] if best is not None else None,
        fail_reason="diverged (recorded in the table)" if state == "FAILED" else None,
    )


def replay_pack(table: Table, proposals: Sequence[Any], points: Sequence[int], seeds: Sequence[int], *, slots: int, stopper: Any | None, val_every: int) -> list[Any]:
    """Replay one round as :class:`~proxyhpo.training.pack_run.PackRun` trains it: ``slots`` trials at once,
    tick by tick, each validated at its ``val_every`` epochs, the stopper's decision epochs and its last; the stopper
    judges the trials that reach an epoch together; a slot freed by a stopped, finished or failed trial takes the
    next proposal (which starts at its epoch 0). Curves come from the table (``points[i]``, ``seeds[i]``).

    Returns:
        one :class:`~proxyhpo.config.TrialResult` per proposal, in proposal order.
    """
    from proxyhpo.training.early_stopping import EpochReport

    epochs = table.epochs
    due = {e for e in range(1, epochs + 1) if e % val_every == 0} | {epochs}
    due |= {e for e in (stopper.decision_epochs() if stopper is not None else ()) if 1 <= e <= epochs}
    validated = sorted(due)
    run = [0] * len(proposals)
    ended: dict[int, str] = {}
    active: list[int] = []
    queued = list(range(len(proposals)))
    while active or queued:
        while len(active) < slots and queued:
            active.append(queued.pop(0))
        for i in active:
            run[i] += 1
        deciding = []
        for i in list(active):
            epoch = run[i]
            val = table.val_dice[points[i], seeds[i], epoch - 1]
            if not math.isfinite(val):  # the trainer marks a model whose loss is not finite failed at once
                ended[i] = "FAILED"
            elif epoch in due:
                if epoch >= epochs:
                    ended[i] = "COMPLETE"
                else:
                    deciding.append(i)
        if stopper is not None and deciding:
            reports = []
            for i in deciding:
                loss = table.train_loss[points[i], seeds[i], run[i] - 1]
                reports.append(EpochReport(proposals[i].trial_id, run[i], float(table.val_dice[points[i], seeds[i], run[i] - 1]), float(loss) if math.isfinite(loss) else None, order=i))
            stopped = stopper.stop(reports)
            for i in deciding:
                if proposals[i].trial_id in stopped:
                    ended[i] = "STOPPED"
        active = [i for i in active if i not in ended]
    return [_result(table, proposal, points[i], seeds[i], run[i], ended[i], validated) for i, proposal in enumerate(proposals)]


def replay_search(table: Table, strategy: str, seed: int, config: Any, *, options: Mapping[str, Any] | None = None) -> list[ReplayTrial]:
    """One seeded search of ``strategy`` on the table, until its trials have cost the largest budget.

    The strategy asks ``proposals_per_batch`` proposals at a time; each snaps to the table's nearest grid point
    (:meth:`Table.snap`), and draws one of the table's training seeds from a generator seeded by ``seed``; the round
    is replayed as a pack (:func:`replay_pack`) with the stopper of its study's ``search.early_stopping`` (successive
    halving, or Hyperband's brackets of it), and told.

    Returns:
        every trial, in proposal order, with its cumulative cost in trial-steps.
    """
    from proxyhpo.registry import SEARCH_STRATEGIES
    from proxyhpo.training.early_stopping import make_stopper

    factory = SEARCH_STRATEGIES[strategy]
    study = replay_study(table, config, factory)
    search = factory(study, seed, **dict(options or {}))
    draws = np.random.default_rng([seed, 0x7AB1E])
    limit = max(config.budgets) * table.trial_steps
    trials: list[ReplayTrial] = []
    spent = 0
    batch = 0
    while spent < limit:
        proposals = search.ask(config.proposals_per_batch)
        points = [table.snap(p.hyperparameters) for p in proposals]
        seeds = [int(draws.integers(table.seeds)) for _ in proposals]
        stopper = make_stopper(search.study.search.early_stopping, table.epochs)
        results = replay_pack(table, proposals, points, seeds, slots=config.pack_slots, stopper=stopper, val_every=search.study.training.val_every)
        search.tell(results)
        for proposal, point, drawn, result in sorted(zip(proposals, points, seeds, results), key=lambda item: item[0].proposal_id):
            steps = result.steps_run
            spent += steps
            trials.append(ReplayTrial(proposal.proposal_id, batch, point, drawn, result.state.value, result.epochs_run, steps, result.final_val_dice, spent))
        batch += 1
    return trials


def pick(trials: Sequence[ReplayTrial], budget_steps: float) -> ReplayTrial | None:
    """The search's pick at a budget: among the trials within it (cumulative cost at most ``budget_steps``) that
    trained all their epochs, the one of highest validation Dice (the earliest on ties), as the live benchmark picks."""
    best: ReplayTrial | None = None
    for trial in trials:
        if trial.cumulative_steps > budget_steps:
            break
        if trial.state == "COMPLETE" and trial.val_dice is not None and (best is None or trial.val_dice > best.val_dice):  # type: ignore[operator]
            best = trial
    return best


def regrets(table: Table, trials: Sequence[ReplayTrial], budgets: Sequence[float]) -> np.ndarray:
    """``(len(budgets),)`` regret at each budget (in full trials): the table's best configuration's test Dice minus
    the test Dice of the configuration picked (:meth:`Table.config_test_dice`); no pick yet: the best's whole Dice."""
    quality = table.config_test_dice()
    best = float(quality.max())
    out = np.empty(len(budgets))
    for k, budget in enumerate(budgets):
        chosen = pick(trials, budget * table.trial_steps)
        out[k] = best - (float(quality[chosen.point]) if chosen is not None else 0.0)
    return out
