"""Successive halving inside packs: the rung schedule, the stopping rule, a pack that sheds its bad trials, and the queue."""

from __future__ import annotations

import pytest
import torch

from proxyhpo.config import HyperParameters, StudyConfig, TrialPlan, TrialResult, TrialResults, TrialSpec, TrialState, load_study, parse_config
from proxyhpo.config.early_stopping import EarlyStoppingConfig, rung_epochs
from proxyhpo.errors import ConfigError
from proxyhpo.training import ModelPack, run_trials
from proxyhpo.tracking import names
from proxyhpo.training.early_stopping import EarlyStopper, EpochReport, Hyperband, SuccessiveHalving, make_stopper


# ------------------------------------------------------------------------------------------------ the schedule


@pytest.mark.parametrize(
    "min_epochs, factor, epochs, expected",
    [
        (5, 3, 60, (5, 15, 45)),
        (4, 2, 20, (4, 8, 16)),
        (1, 3, 9, (1, 3)),  # the last epoch is no rung: a trial there has finished
        (10, 3, 10, ()),
        (20, 3, 10, ()),
    ],
)
def test_rungs_are_geometric_below_the_epochs(min_epochs: int, factor: int, epochs: int, expected: tuple[int, ...]) -> None:
    assert rung_epochs(min_epochs, factor, epochs) == expected
    assert EarlyStoppingConfig(reduction_factor=factor, min_epochs=min_epochs).rungs(epochs) == expected


@pytest.mark.parametrize("args, message", [((0, 3, 9), "min_epochs must be >= 1, got 0"), ((1, 1, 9), "reduction_factor must be >= 2, got 1"), ((1, 3, 0), "epochs must be >= 1, got 0")])
def test_rung_arguments_are_checked(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rung_epochs(*args)


def test_a_study_refuses_rungs_that_stop_nothing() -> None:
    document = {"name": "s", "data": {"dataset": "d"}, "training": {"epochs": 10}, "search": {"early_stopping": {"min_epochs": 10}}}
    with pytest.raises(ConfigError, match=r"search.early_stopping.min_epochs \(10\) must be below training.epochs \(10\)"):
        parse_config(StudyConfig, document, "study.yaml")


def test_early_stopping_is_on_in_the_demo_and_off_in_the_papers_examples() -> None:
    assert load_study("examples/demo.yaml").search.early_stopping is not None
    for example in ("spleen", "prostate"):
        assert load_study(f"examples/{example}.yaml").search.early_stopping is None


# ------------------------------------------------------------------------------------------------- the rule


def _halving(factor: int = 3, min_epochs: int = 1, epochs: int = 30) -> SuccessiveHalving:
    return SuccessiveHalving(EarlyStoppingConfig(reduction_factor=factor, min_epochs=min_epochs), epochs)


def test_a_synchronous_pack_keeps_its_best_third_at_each_rung() -> None:
    halving = _halving()
    assert isinstance(halving, EarlyStopper) and tuple(halving.decision_epochs()) == (1, 3, 9, 27)
    reports = [EpochReport(f"t{i}", 1, dice, order=i) for i, dice in enumerate([0.1, 0.5, 0.3, 0.2, 0.6, 0.0])]
    assert halving.stop(reports) == {"t0", "t2", "t3", "t5"}  # keeps ceil(6/3) = 2: t4 and t1
    assert halving.stop([EpochReport("t1", 3, 0.7, order=1), EpochReport("t4", 3, 0.65, order=4)]) == {"t4"}
    assert halving.stop([EpochReport("t1", 2, 0.0)]) == set()  # not a rung: nothing is decided


def test_asynchronous_arrivals_are_judged_against_everyone_at_the_rung_so_far() -> None:
    halving = _halving(factor=2)
    assert halving.stop([EpochReport("a", 1, 0.2)]) == set()  # the first arrival has no one to lose to
    assert halving.stop([EpochReport("b", 1, 0.1)]) == {"b"}  # 2 at the rung: only the best goes on
    assert halving.stop([EpochReport("c", 1, 0.3)]) == set()  # 3: the best two go on, c is the best
    assert halving.stop([EpochReport("d", 1, 0.15)]) == {"d"}  # 4: a and c are the two best
    assert halving.stop([EpochReport("e", 1, 0.25)]) == set()  # 5: ceil(5/2) = 3 go on, e is second


def test_equal_dice_is_decided_by_the_lower_training_loss() -> None:
    halving = _halving(factor=2)
    reports = [EpochReport("a", 1, 0.0, train_loss=1.5, order=0), EpochReport("b", 1, 0.0, train_loss=0.9, order=1)]
    assert halving.stop(reports) == {"a"}


def test_the_rules_state_survives_a_checkpoint() -> None:
    halving = _halving(factor=2)
    halving.stop([EpochReport("a", 1, 0.2), EpochReport("b", 1, 0.1)])
    again = _halving(factor=2)
    again.load_state_dict(halving.state_dict())
    assert again.stop([EpochReport("c", 1, 0.05)]) == halving.stop([EpochReport("c", 1, 0.05)]) == {"c"}  # 3rd of 3: ceil(3/2) = 2 go on


# ------------------------------------------------------------------------------------------------- hyperband


def _hyperband(factor: int = 3, min_epochs: int = 1, epochs: int = 9) -> Hyperband:
    return Hyperband(EarlyStoppingConfig(reduction_factor=factor, min_epochs=min_epochs, schedule="hyperband"), epochs)


def _ids_in(hyperband: Hyperband, bracket: int, n: int) -> list[str]:
    """The first ``n`` trial ids (``r0-t000`` on) that fall in ``bracket``."""
    ids = (f"r0-t{i:03d}" for i in range(10_000))
    return [trial_id for trial_id in ids if hyperband.bracket_of(trial_id) == bracket][:n]


@pytest.mark.parametrize("min_epochs, factor, epochs", [(2, 3, 10), (1, 3, 9), (1, 2, 20), (5, 3, 60), (4, 3, 10)])
def test_hyperband_has_optunas_brackets_and_shares(min_epochs: int, factor: int, epochs: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs, reduction_factor=factor)
    study = optuna.create_study(pruner=pruner)
    trial = study.ask()
    trial.report(0.0, 1)
    trial.should_prune()  # Optuna sizes its brackets at the first decision (private attributes, Optuna pinned)
    hyperband = _hyperband(factor, min_epochs, epochs)
    assert len(hyperband.brackets) == pruner._n_brackets
    assert hyperband.shares == list(pruner._trial_allocation_budgets)
    assert [bracket.rungs[:1] for bracket in hyperband.brackets] == [rung_epochs(min_epochs * factor**s, factor, epochs)[:1] for s in range(pruner._n_brackets)]


def test_hyperband_spreads_trials_over_its_brackets_by_their_shares() -> None:
    hyperband = _hyperband()  # brackets from epochs 1, 3 and 9 (no rung: trains to the end), shares 9 : 5 : 3
    assert [bracket.rungs for bracket in hyperband.brackets] == [(1, 3), (3,), ()] and tuple(hyperband.decision_epochs()) == (1, 3)
    counts = [0, 0, 0]
    for i in range(17_000):
        counts[hyperband.bracket_of(f"r{i // 100}-t{i % 100:03d}")] += 1
    assert [round(c / 1000) for c in counts] == [9, 5, 3]
    assert hyperband.bracket_of("r3-t007") == _hyperband().bracket_of("r3-t007")  # the id alone decides: packs and resumes agree
    assert isinstance(hyperband, EarlyStopper) and isinstance(make_stopper(EarlyStoppingConfig(min_epochs=1, schedule="hyperband"), 9), Hyperband)
    assert isinstance(make_stopper(EarlyStoppingConfig(min_epochs=1), 9), SuccessiveHalving)


def test_hyperband_judges_a_trial_only_in_its_bracket_and_only_at_its_bracket_s_rungs() -> None:
    hyperband = _hyperband()
    first, second, last = (_ids_in(hyperband, bracket, 3) for bracket in range(3))
    # epoch 1 is a rung of the first bracket only: the others' trials are not judged there, however bad
    reports = [EpochReport(first[0], 1, 0.5), EpochReport(first[1], 1, 0.1), EpochReport(first[2], 1, 0.2)]
    reports += [EpochReport(t, 1, 0.0) for t in second + last]
    assert hyperband.stop(reports) == {first[1], first[2]}  # ceil(3/3) = 1 of the first bracket goes on
    # epoch 3: the first bracket's second rung and the second bracket's first; each bracket keeps its own best
    reports = [EpochReport(first[0], 3, 0.1)] + [EpochReport(t, 3, dice) for t, dice in zip(second, [0.9, 0.8, 0.7])] + [EpochReport(t, 3, 0.0) for t in last]
    assert hyperband.stop(reports) == {second[1], second[2]}  # first[0] is alone at its rung; the last bracket has none
    again = _hyperband()
    again.load_state_dict(hyperband.state_dict())
    assert again.stop([EpochReport("late", 3, 0.05)]) == hyperband.stop([EpochReport("late", 3, 0.05)])


# -------------------------------------------------------------------------------------------------- the pack


BAD_LR_SMALL = HyperParameters(lr=1e-8, optimizer="adam")  # learns nothing: the untrained network's Dice
BAD_LR_HUGE = HyperParameters(lr=10.0, optimizer="rmsprop")  # thrown about by every step


def _plan(cases, recipe, trials, **kw) -> TrialPlan:
    args = dict(recipe=recipe, train=cases[:4], val=cases[4:6], epochs=3, val_every=1, trials=trials, device="cpu", num_workers=0)
    return TrialPlan(**(args | kw))


@pytest.fixture
def stacked_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many models each training forward pass of every pack computed at once."""
    sizes: list[int] = []
    forward = ModelPack.forward

    def spy(self, chunk, x, *, shared_input=False):
        if not shared_input:
            sizes.append(len(chunk))
        return forward(self, chunk, x, shared_input=shared_input)

    monkeypatch.setattr(ModelPack, "forward", spy)
    return sizes


def test_a_pack_drops_its_bad_trials_at_the_rung_and_steps_with_fewer_models(sphere_cases, tiny_recipe, stacked_sizes) -> None:
    torch.set_num_threads(1)
    trials = [
        TrialSpec(trial_id="good", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam"), seed=0),
        TrialSpec(trial_id="small-lr", hyperparameters=BAD_LR_SMALL, seed=1),
        TrialSpec(trial_id="huge-lr", hyperparameters=BAD_LR_HUGE, seed=2),
    ]
    plan = _plan(sphere_cases, tiny_recipe, trials, pack_size=3, val_every=3, early_stopping=EarlyStoppingConfig(reduction_factor=3, min_epochs=1))
    epochs_seen: list[tuple[str, int]] = []
    good, small, huge = run_trials(plan, on_epoch=lambda trial, epoch, dice: epochs_seen.append((trial, epoch)), progress=False)

    # the rung (epoch 1) is a validation point although val_every is 3; only one of three goes on
    assert sorted(epochs_seen) == [("good", 1), ("good", 3), ("huge-lr", 1), ("small-lr", 1)]
    assert good.state is TrialState.COMPLETE and good.stopped_at_epoch is None and good.epochs_run == 3
    for stopped in (small, huge):
        assert stopped.state is TrialState.STOPPED and stopped.stopped_at_epoch == 1 and stopped.epochs_run == 1
        assert stopped.val_epochs == [1] and stopped.final_val_dice == stopped.val_dice[0] < good.val_dice[0]
        assert stopped.fail_reason is None and stopped.steps_run == 2 and stopped.process_hours < good.process_hours
    # 2 steps an epoch: the first epoch's steps stack all three models, every later step the survivor alone
    assert stacked_sizes == [3, 3, 1, 1, 1, 1]
    assert good.steps_run == 6 and good.pack_size == 3


def test_a_pack_with_hyperband_stops_only_in_the_brackets_that_have_rungs(sphere_cases, tiny_recipe) -> None:
    torch.set_num_threads(1)
    hyperband = _hyperband(epochs=3)  # brackets from epoch 1 (rung 1) and from epoch 3 (no rung below 3)
    (good, bad), (spared,) = _ids_in(hyperband, 0, 2), _ids_in(hyperband, 1, 1)
    trials = [
        TrialSpec(trial_id=good, hyperparameters=HyperParameters(lr=1e-2, optimizer="adam"), seed=0),
        TrialSpec(trial_id=bad, hyperparameters=BAD_LR_SMALL, seed=1),
        TrialSpec(trial_id=spared, hyperparameters=BAD_LR_SMALL, seed=2),
    ]
    plan = _plan(sphere_cases, tiny_recipe, trials, pack_size=3, early_stopping=EarlyStoppingConfig(reduction_factor=3, min_epochs=1, schedule="hyperband"))
    results = {r.trial_id: r for r in run_trials(plan, progress=False)}
    assert results[bad].state is TrialState.STOPPED and results[bad].stopped_at_epoch == 1  # lost to good in its bracket
    assert results[good].state is TrialState.COMPLETE and results[spared].state is TrialState.COMPLETE  # its bracket never stops
    assert results[spared].val_dice[0] < results[good].val_dice[0]  # worse, and trained to the end all the same


def test_freed_slots_take_queued_trials_which_start_at_epoch_one(sphere_cases, tiny_recipe, stacked_sizes) -> None:
    torch.set_num_threads(1)
    trials = [
        TrialSpec(trial_id="a", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam"), seed=0),
        TrialSpec(trial_id="b", hyperparameters=BAD_LR_SMALL, seed=1),
        TrialSpec(trial_id="c", hyperparameters=HyperParameters(lr=3e-3, optimizer="novograd"), seed=4),
        TrialSpec(trial_id="d", hyperparameters=BAD_LR_HUGE, seed=2),
    ]
    plan = _plan(sphere_cases, tiny_recipe, trials, pack_size=2, early_stopping=EarlyStoppingConfig(reduction_factor=2, min_epochs=1))
    order: list[tuple[str, int]] = []
    results = {r.trial_id: r for r in run_trials(plan, on_epoch=lambda trial, epoch, dice: order.append((trial, epoch)), progress=False)}

    assert max(stacked_sizes) == 2 and all(r.pack_size == 2 for r in results.values())  # never more models than slots
    assert {r.state for r in results.values()} <= {TrialState.COMPLETE, TrialState.STOPPED}
    assert results["b"].stopped_at_epoch == 1  # lost to a at the first rung: its slot goes to c
    # every queued trial trained from its own epoch 1, after the trials ahead of it in the queue had started
    for trial in "cd":
        assert results[trial].steps_run > 0 and results[trial].val_epochs[0] == 1
        assert order.index((trial, 1)) > order.index(("b", 1))
    assert order.index(("c", 1)) < order.index(("d", 1))
    assert sum(r.steps_run for r in results.values()) == sum(stacked_sizes)  # each step charged to the models it stacked
    assert sum(r.epochs_run for r in results.values()) < 4 * 3  # trial-epochs were saved


def test_a_stopped_result_round_trips_and_names_its_stop(tmp_path) -> None:
    stopped = TrialResult(
        trial_id="r0-t001", state=TrialState.STOPPED, stopped_at_epoch=5, hyperparameters=HyperParameters(lr=1e-3), network="proxy-L3",
        epochs_run=5, val_epochs=[5], val_dice=[0.2], final_val_dice=0.2,
    )
    TrialResults(results=(stopped,)).write(tmp_path / "results.json")
    assert TrialResults.read(tmp_path / "results.json").results == (stopped,)
    with pytest.raises(ValueError, match="stopped_at_epoch is set exactly when state is STOPPED"):
        TrialResult(trial_id="t", state=TrialState.COMPLETE, stopped_at_epoch=5, hyperparameters=HyperParameters(lr=1e-3), network="proxy-L3")
    with pytest.raises(ValueError, match="stopped_at_epoch is set exactly when state is STOPPED"):
        TrialResult(trial_id="t", state=TrialState.STOPPED, hyperparameters=HyperParameters(lr=1e-3), network="proxy-L3")


@pytest.mark.parametrize("schedule", ["asha", "hyperband"])
def test_a_killed_queue_resumes_exactly(sphere_cases, tiny_recipe, tmp_path, schedule: str) -> None:
    """A checkpoint holds the queue: trials admitted, stopped and finished, the rule's records (every bracket's), every optimiser."""
    torch.set_num_threads(1)
    trials = [
        TrialSpec(trial_id="a", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam"), seed=0),
        TrialSpec(trial_id="b", hyperparameters=BAD_LR_SMALL, seed=1),
        TrialSpec(trial_id="c", hyperparameters=HyperParameters(lr=3e-3, optimizer="novograd", weight_decay=1e-4), seed=4),
        TrialSpec(trial_id="d", hyperparameters=BAD_LR_HUGE, seed=2),
    ]
    stopping = EarlyStoppingConfig(reduction_factor=2, min_epochs=1, schedule=schedule)
    uninterrupted = run_trials(_plan(sphere_cases, tiny_recipe, trials, pack_size=2, early_stopping=stopping), progress=False)
    assert any(result.state is TrialState.STOPPED for result in uninterrupted)  # the rule's state decides something

    class Killed(Exception):
        pass

    def kill_at_c_epoch_2(trial: str, epoch: int, dice: float) -> None:
        if (trial, epoch) == ("c", 2):
            raise Killed

    plan = _plan(sphere_cases, tiny_recipe, trials, pack_size=2, early_stopping=stopping, checkpoint=str(tmp_path / "queue.pt"), checkpoint_every=1)
    with pytest.raises(Killed):
        run_trials(plan, on_epoch=kill_at_c_epoch_2, progress=False)
    resumed = run_trials(plan, progress=False)
    for before, after in zip(uninterrupted, resumed, strict=True):
        assert (after.state, after.stopped_at_epoch, after.val_epochs, after.steps_run) == (before.state, before.stopped_at_epoch, before.val_epochs, before.steps_run)
        assert after.val_dice == pytest.approx(before.val_dice, abs=1e-6)


# ------------------------------------------------------------------------------------------------------ MLflow


def test_a_stopped_trial_is_a_finished_run_tagged_with_its_stop_and_the_report_counts_what_it_saved(tmp_path) -> None:
    """On a real SQLite store: status FINISHED (no failure: issue 22), the stop tag, its Dice at the stop as
    ``dice_at_stop`` (no final Dice), Dice per epoch up to the stop, its hours; the parent's summary."""
    from proxyhpo import tracking
    from proxyhpo.analysis.report import build_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = parse_config(
        StudyConfig,
        {"name": "stopping", "data": {"dataset": "d"}, "training": {"epochs": 9}, "search": {"early_stopping": {"min_epochs": 1, "reduction_factor": 3}}},
        "study.yaml",
    )
    parent = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    specs = [TrialSpec(trial_id=f"r0-t00{i}", hyperparameters=HyperParameters(lr=1e-3), round=0) for i in range(3)]
    outcomes = {  # trial -> (state, stopped at, Dice per validated epoch)
        "r0-t000": (TrialState.COMPLETE, None, {1: 0.3, 3: 0.5, 9: 0.7}),
        "r0-t001": (TrialState.STOPPED, 1, {1: 0.1}),
        "r0-t002": (TrialState.STOPPED, 3, {1: 0.35, 3: 0.4}),
    }
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        for spec in specs:
            state, stopped_at, dice = outcomes[spec.trial_id]
            for epoch, value in dice.items():
                runs[spec.trial_id].log_epoch(epoch, value)
            runs[spec.trial_id].finish(
                TrialResult.of(
                    spec, state, stopped_at_epoch=stopped_at, epochs_run=max(dice), steps_run=4 * max(dice), val_epochs=list(dice),
                    val_dice=list(dice.values()), final_val_dice=list(dice.values())[-1], process_hours=0.001 * max(dice),
                )
            )
    client = tracking.client(uri)
    for spec in specs:
        run = client.get_run(runs[spec.trial_id].run_id)
        state, stopped_at, dice = outcomes[spec.trial_id]
        assert run.info.status == "FINISHED"
        assert run.data.tags.get(tracking.STOPPED_TAG) == (str(stopped_at) if stopped_at else None)
        assert (names.DICE_AT_STOP if stopped_at else names.FINAL_VAL_DICE) in run.data.metrics
        assert (names.FINAL_VAL_DICE if stopped_at else names.DICE_AT_STOP) not in run.data.metrics
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, names.VAL_DICE)] == list(dice.items())
        assert run.data.metrics[names.PROCESS_HOURS] == pytest.approx(0.001 * max(dice))

    summary, markdown = build_report(study, parent, tmp_path / "report", tracking_uri=uri)
    assert (summary.n_trials, summary.n_stopped, summary.n_failed, summary.best_trial) == (3, 2, 0, "r0-t000")
    assert (summary.trial_epochs_run, summary.trial_epochs_saved) == (13, 8 + 6)
    assert client.get_run(parent).data.metrics[names.TRIAL_EPOCHS_SAVED] == 14
    assert "Early stopping stopped 2 of 3 trials and saved 14 of 27 planned trial-epochs (52 %)." in markdown
    assert "| stopped at epoch 3, Dice 0.4000 |" in markdown and "rungs at epochs 1, 3)." in markdown
