"""The study report, built from trial runs logged through proxyhpo.tracking into a real SQLite MLflow store."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from proxyhpo import tracking
from proxyhpo.tracking import names
from proxyhpo.analysis.report import HpoRecord, build_report, collect, collect_trials, plot_search, render, render_markdown, summarize, write_report
from proxyhpo.config import (
    ControllerConfig,
    ControllerState,
    DataConfig,
    HistoryRecord,
    HyperParameters,
    NetworkConfig,
    Proposal,
    SearchConfig,
    SearchSpace,
    StudyConfig,
    TrialResult,
    TrialSpec,
    TrialState,
    UpdateStats,
    default_search_space,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: trial id -> (round, lr, optimizer, shift prob, val Dice per epoch or None when it failed, GPU-hours)
TRIALS = {
    "r0-p0": (0, 1e-3, "adam", 0.2, [0.30, 0.52], 0.010),
    "r0-p1": (0, 3e-3, "rmsprop", 0.7, [0.41, 0.66], 0.015),
    "r1-p0": (1, 5e-1, "adamax", 0.1, None, 0.002),
    "r1-p1": (1, 2e-4, "novograd", 0.9, [0.25, 0.61], 0.020),
}
FINAL = (4e-3, [0.70, 0.83], 0.5, 0.77, 0.74)  # lr, val Dice per epoch, GPU-hours, external test Dice, internal test Dice (held-out cases)


def _spec(
    trial_id: str, round: int | None, lr: float, optimizer: str, shift: float, network: NetworkConfig, weight_decay: float = 0.0
) -> TrialSpec:
    hyperparameters = HyperParameters(lr=lr, optimizer=optimizer, intensity_shift_prob=shift, weight_decay=weight_decay)
    return TrialSpec(trial_id=trial_id, hyperparameters=hyperparameters, network=network, data_label="mi-4", round=round)


def _result(spec: TrialSpec, dice: list[float] | None, gpu_hours: float, test_dice: float | None = None, internal_test_dice: float | None = None) -> TrialResult:
    return TrialResult(
        trial_id=spec.trial_id,
        state=TrialState.COMPLETE if dice else TrialState.FAILED,
        fail_reason=None if dice else "loss became NaN at step 2",
        hyperparameters=spec.hyperparameters,
        network=spec.network.name,
        round=spec.round,
        epochs_run=len(dice or []),
        val_epochs=list(range(1, len(dice or []) + 1)),
        val_dice=dice or [],
        final_val_dice=dice[-1] if dice else None,
        best_val_dice=max(dice) if dice else None,
        test_dice=test_dice,
        internal_test_dice=internal_test_dice,
        gpu_hours=gpu_hours,
        process_hours=gpu_hours / 2,
        wall_seconds=gpu_hours * 3600,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (its schema migration takes seconds); tests use their own experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def study() -> StudyConfig:
    return StudyConfig(name="report-study", description="A study to report on.", data=DataConfig(dataset="/data/spleen"))


def _log_study(study: StudyConfig, uri: str) -> str:
    """A parent run with four search trials (one failed) and a final run, logged as a study logs them; returns the parent's id."""
    parent = tracking.start_parent_run(study.name, "hpo", config=study.model_dump(mode="json"), tracking_uri=uri)
    specs = {tid: _spec(tid, rnd, lr, opt, shift, NetworkConfig.proxy(3), 10 * lr) for tid, (rnd, lr, opt, shift, _, _) in TRIALS.items()}
    names = study.search.space.names
    for round in (0, 1):
        mine = [spec for spec in specs.values() if spec.round == round]
        with tracking.trial_runs(
            study.name, mine, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False, hyperparameter_names=names
        ) as runs:
            for spec in mine:
                _, _, _, _, dice, gpu = TRIALS[spec.trial_id]
                runs[spec.trial_id].finish(_result(spec, dice, gpu))
    lr, dice, gpu, test, internal_test = FINAL
    final = _spec("final", None, lr, "rmsprop", 0.7, NetworkConfig.full())
    with tracking.trial_runs(
        study.name, [final], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False, role="final", hyperparameter_names=names
    ) as runs:
        runs["final"].finish(_result(final, dice, gpu, test_dice=test, internal_test_dice=internal_test))
    # a trial of another pipeline run in the same experiment must not be counted
    other = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    stray = _spec("stray", 0, 1e-3, "adam", 0.0, NetworkConfig.proxy(3))
    with tracking.trial_runs(study.name, [stray], parent_run_id=other, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["stray"].finish(_result(stray, [0.99], 7.0))
    return parent


@pytest.fixture(scope="module")
def logged_study(study: StudyConfig, store: str) -> tuple[str, str]:
    """The study's runs in the module's store; returns (tracking URI, parent run id)."""
    return store, _log_study(study, store)


def _custom_study() -> StudyConfig:
    """A study searching lr and weight decay only: every report column and plot panel follows its space."""
    space = SearchSpace.model_validate({"lr": {"type": "log_uniform", "low": 1e-4, "high": 1.0}, "weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1}})
    return StudyConfig(name="custom-space", data=DataConfig(dataset="/data/spleen"), search=SearchConfig(space=space, rounds=2, proposals_per_round=2))


def _controller_state(space: SearchSpace) -> ControllerState:
    """A controller's state after two rounds of two proposals over ``space`` (rewards as in TRIALS)."""
    history, updates = [], []
    for id_, (trial_id, (rnd, lr, opt, shift, dice, _)) in enumerate(TRIALS.items()):
        values = {"lr": lr, "optimizer": opt, "intensity_shift_prob": shift}
        proposal = Proposal(proposal_id=id_, round=rnd, hyperparameters={name: values[name] for name in space.names}, log_prob=-1.5)
        history.append(HistoryRecord(proposal=proposal, reward=dice[-1] if dice else None, failed=dice is None))
    for rnd in (0, 1):
        rewards = [record.reward for record in history if record.proposal.round == rnd and record.reward is not None]
        updates.append(
            UpdateStats(round=rnd, n_proposals=2, n_failed=2 - len(rewards), stepped=True, mean_reward=sum(rewards) / len(rewards), entropy=2.0 - rnd)
        )
    return ControllerState(config=ControllerConfig(), search_space=space, round=2, next_proposal_id=4, history=tuple(history), updates=tuple(updates))


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])  # the header chunk's checksum
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return width, height


def test_collect_trials_reads_back_children(study: StudyConfig, logged_study: tuple[str, str]) -> None:
    uri, parent = logged_study
    rows = {row.trial_id: row for row in collect_trials(parent, study.search.space, uri)}
    assert set(rows) == {*TRIALS, "final"}
    assert rows["final"].role == "final"
    assert rows["r1-p0"].status == "FAILED" and rows["r1-p0"].val_dice is None
    for trial_id, (rnd, lr, opt, shift, dice, gpu) in TRIALS.items():
        row = rows[trial_id]
        assert (row.role, row.round, row.network, row.data) == ("trial", rnd, "proxy-L3", "mi-4")
        # by the search space's names, numbers as floats and choices as strings
        assert row.hyperparameters == {"lr": pytest.approx(lr), "optimizer": opt, "intensity_shift_prob": pytest.approx(shift)}
        assert isinstance(row.hyperparameters["lr"], float) and isinstance(row.hyperparameters["intensity_shift_prob"], float)
        assert row.gpu_hours == pytest.approx(gpu)
        assert row.process_hours == pytest.approx(gpu / 2)
        if dice:
            assert row.val_dice == pytest.approx(dice[-1])


def test_build_report(study: StudyConfig, logged_study: tuple[str, str], tmp_path: Path) -> None:
    uri, parent = logged_study
    out = tmp_path / "report"
    summary, markdown = build_report(study, parent, out, tracking_uri=uri)

    # the summary
    assert summary.n_trials == 4
    assert summary.n_failed == 1
    assert summary.best_trial == "r0-p1"
    assert summary.best_val_dice == pytest.approx(0.66)
    assert summary.best_hyperparameters == {"lr": pytest.approx(3e-3), "optimizer": "rmsprop", "intensity_shift_prob": pytest.approx(0.7)}
    assert summary.final_val_dice == pytest.approx(0.83)  # the search-validation cases, which chose the checkpoint
    assert summary.final_internal_test_dice == pytest.approx(0.74)  # the held-out cases
    assert summary.metrics()[names.FINAL_INTERNAL_TEST_DICE] == pytest.approx(0.74)
    assert summary.final_test_dice == pytest.approx(0.77)
    search_gpu = sum(gpu for *_, gpu in TRIALS.values())
    assert summary.search_gpu_hours == pytest.approx(search_gpu)
    assert summary.total_gpu_hours == pytest.approx(search_gpu + FINAL[2])  # failed trials and the final model count
    assert summary.total_process_hours == pytest.approx((search_gpu + FINAL[2]) / 2)

    # report.md
    text = (out / "report.md").read_text()
    assert text == markdown
    assert text.startswith("# Study `report-study`")
    assert "A study to report on." in text
    best_table = text.split("## Best hyper-parameters", 1)[1].split("##", 1)[0]
    assert "| lr | 0.003 |" in best_table
    assert "| optimizer | rmsprop |" in best_table
    assert "| intensity_shift_prob | 0.7 |" in best_table
    assert "Best search trial: `r0-p1` with validation Dice 0.6600." in text
    final_table = text.split("## Final model", 1)[1].split("##", 1)[0]
    assert "| validation (the search cases' validation part; chose the checkpoint) | 0.8300 |" in final_table
    assert "| internal test (the held-out cases; read by no search, stopping or checkpoint choice) | 0.7400 |" in final_table
    assert "| external | 0.7700 |" in final_table
    assert "4 search trials: 3 finished, 0 stopped early, 1 failed." in text
    trials_table = text.split("## Trials", 1)[1]
    # one column per search-space name, in the space's order
    assert "| trial | round | lr | optimizer | intensity_shift_prob | val Dice | status |" in trials_table.splitlines()
    rows = [line for line in trials_table.splitlines() if line.startswith("| r")]
    assert [line.split("|")[1].strip() for line in rows] == list(TRIALS)  # oldest first, final and stray excluded
    assert "| r0-p1 | 0 | 0.003 | rmsprop | 0.7 | 0.6600 | FINISHED |" in rows
    assert "| r1-p0 | 1 | 0.5 | adamax | 0.1 | – | FAILED |" in rows
    assert "| r1-p1 | 1 | 0.0002 | novograd | 0.9 | 0.6100 | FINISHED |" in rows  # a small lr keeps its digits
    assert "stray" not in text
    assert "weight_decay" not in text  # logged by no trial run and searched by no one

    # search.png and summary.json
    _png_size((out / "search.png").read_bytes())
    assert json.loads((out / "summary.json").read_text())["best_trial"] == "r0-p1"
    assert not list(out.glob("*.partial"))

    # the parent run holds the summary and the artifacts, and is closed
    client = tracking.client(uri)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best_val_dice"] == pytest.approx(0.66)
    assert run.data.metrics["total_gpu_hours"] == pytest.approx(search_gpu + FINAL[2])
    assert run.data.metrics["n_failed_trials"] == 1
    assert run.data.metrics["total_process_hours"] == pytest.approx((search_gpu + FINAL[2]) / 2)
    assert run.data.metrics["search_process_hours"] == pytest.approx(search_gpu / 2)
    assert "total_cpu_hours" not in run.data.metrics
    assert {info.path for info in client.list_artifacts(parent)} >= {"report.md", "search.png", "summary.json", "best_hyperparameters.json"}
    best = json.loads(Path(client.download_artifacts(parent, "best_hyperparameters.json", str(tmp_path / "dl"))).read_text())
    assert best == {"lr": pytest.approx(3e-3), "optimizer": "rmsprop", "intensity_shift_prob": pytest.approx(0.7)}


def test_report_follows_the_search_space(store: str, tmp_path: Path) -> None:
    study = _custom_study()
    parent = _log_study(study, store)
    rows = collect_trials(parent, study.search.space, store)
    assert all(set(row.hyperparameters) == {"lr", "weight_decay"} for row in rows)
    by_id = {row.trial_id: row for row in rows}
    assert by_id["r0-p1"].hyperparameters == {"lr": pytest.approx(3e-3), "weight_decay": pytest.approx(3e-2)}
    # a name the runs never logged reads back as None
    assert collect_trials(parent, default_search_space(), store)[0].hyperparameters["optimizer"] is None

    summary = summarize(rows)
    assert summary.best_trial == "r0-p1"
    assert summary.best_hyperparameters == {"lr": pytest.approx(3e-3), "weight_decay": pytest.approx(3e-2)}
    text = render_markdown(study, summary, rows)
    assert text.splitlines()[4].startswith(f"Search: `{study.search.strategy}`, ")  # which strategy searched
    assert "| trial | round | lr | weight_decay | val Dice | status |" in text.splitlines()
    assert "| r0-p1 | 0 | 0.003 | 0.03 | 0.6600 | FINISHED |" in text.splitlines()
    assert "optimizer" not in text and "intensity_shift_prob" not in text

    # the search plot (issue 22): Optuna's four visualisations of an in-memory study of the trials, 2 x 2 at a size
    # MLflow shows legibly; a log-uniform lr on log axes; stopped trials pruned at their rung, failed ones FAIL
    from optuna.trial import TrialState

    from proxyhpo.analysis.study_plots import SEARCH_PLOT_INCHES, search_study

    searched = search_study(rows, study.search.space)
    states = [trial.state for trial in searched.trials]
    ended = [row for row in rows if row.role == names.ROLE_TRIAL and not row.running and (row.stopped or row.val_dice is not None)]
    assert sorted(state.name for state in states if state.name != "FAIL") == sorted("PRUNED" if row.stopped else "COMPLETE" for row in ended)
    # a failed trial is drawn where Optuna can hold its values (r1-p0's weight decay 5.0 lies outside the space)
    assert searched.trials[0].distributions["lr"].log and not searched.trials[0].distributions["weight_decay"].log
    assert TrialState.COMPLETE in states
    drawn = plot_search(rows, study.search.space)
    assert len(drawn.axes) == 4 and tuple(drawn.get_size_inches()) == SEARCH_PLOT_INCHES
    assert drawn.texts[0].get_text().startswith("search: ") or drawn._suptitle.get_text().startswith("search: ")


def test_write_report_for_the_pipeline(study: StudyConfig, store: str, tmp_path: Path) -> None:
    from proxyhpo.controller import ReinforceController
    from proxyhpo.controller.state import read_state, write_state

    study = study.model_copy(update={"name": "pipeline-report", "search": study.search.model_copy(update={"strategy": "reinforce"})})
    parent = _log_study(study, store)
    # the report restores the study's strategy from its state: a real controller's tensors beside the history it is told
    state = _controller_state(study.search.space)
    _, tensors = read_state(ReinforceController(study.search.space, config=state.config).save(tmp_path / "fresh.zip"))
    state_path = write_state(tmp_path / "controller.zip", state, tensors)
    markdown, html = tmp_path / "out" / "report.md", tmp_path / "out" / "report.html"

    summary = write_report(study, parent, state_path, markdown=markdown, html=html, tracking_uri=store)

    assert (summary.best_trial, summary.n_trials, summary.n_failed) == ("r0-p1", 4, 1)
    text = markdown.read_text()
    assert text.startswith("# Study `pipeline-report`") and "Best search trial: `r0-p1`" in text
    page = html.read_text()
    assert page.startswith("<html>") and page.rstrip().endswith("</html>")
    assert "<title>pipeline-report</title>" in page
    image = page.split("data:image/png;base64,", 1)[1].split("'", 1)[0]
    _png_size(base64.b64decode(image))  # the plot inlined, whole
    assert "| r1-p0 | 1 | 0.5 | adamax | 0.1 | – | FAILED |" in page  # the Markdown, escaped into the page
    assert "Study `pipeline-report`" in page
    assert not list(tmp_path.rglob("*.partial"))

    client = tracking.client(store)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best_val_dice"] == pytest.approx(0.66)
    assert {info.path for info in client.list_artifacts(parent)} >= {"report.md", "search.png", "summary.json", "best_hyperparameters.json", "controller_history.json"}
    history = json.loads(Path(client.download_artifacts(parent, "controller_history.json", str(tmp_path / "dl"))).read_text())
    assert [record["proposal"]["proposal_id"] for record in history] == [0, 1, 2, 3]
    assert [record["failed"] for record in history] == [False, False, True, False]
    means = sorted((m.step, m.value) for m in client.get_metric_history(parent, "round_mean_val_dice"))
    assert means == [(0, pytest.approx((0.52 + 0.66) / 2)), (1, pytest.approx(0.61))]
    entropy = sorted((m.step, m.value) for m in client.get_metric_history(parent, "controller_entropy"))
    assert entropy == [(0, 2.0), (1, 1.0)]


def test_write_report_reads_any_strategy_through_its_protocol(study: StudyConfig, store: str, tmp_path: Path) -> None:
    """Random search keeps no controller: its history and per-round mean Dice are logged, no policy entropy."""
    from proxyhpo.config import SearchState
    from proxyhpo.search import study_with

    study = study_with(study.model_copy(update={"name": "random-report"}), "search", strategy="random")
    parent = _log_study(study, store)
    history = _controller_state(study.search.space).history
    state_path = SearchState(strategy="random", seed=0, batches=2, next_proposal_id=4, generator=np.random.default_rng(0).bit_generator.state, history=history).write(tmp_path / "search.json")

    write_report(study, parent, state_path, markdown=tmp_path / "report.md", html=tmp_path / "report.html", tracking_uri=store)

    client = tracking.client(store)
    logged = json.loads(Path(client.download_artifacts(parent, "controller_history.json", str(tmp_path / "dl"))).read_text())
    assert [record["proposal"]["proposal_id"] for record in logged] == [0, 1, 2, 3]
    means = sorted((m.step, m.value) for m in client.get_metric_history(parent, names.ROUND_MEAN_VAL_DICE))
    assert means == [(0, pytest.approx((0.52 + 0.66) / 2)), (1, pytest.approx(0.61))]
    assert client.get_metric_history(parent, names.CONTROLLER_ENTROPY) == []


def test_report_when_every_trial_failed(study: StudyConfig, store: str, tmp_path: Path) -> None:
    uri = store
    study = study.model_copy(update={"name": "all-failed"})
    parent = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    specs = [_spec(f"r0-p{i}", 0, 1e-1, "adam", 0.0, NetworkConfig.proxy(3)) for i in range(2)]
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        for spec in specs:
            runs[spec.trial_id].finish(_result(spec, None, 0.001))
    summary, markdown = build_report(study, parent, tmp_path / "report", tracking_uri=uri)
    assert (summary.n_trials, summary.n_failed, summary.best_trial, summary.best_val_dice) == (2, 2, None, None)
    assert summary.total_gpu_hours == pytest.approx(0.002)
    assert "validation Dice –" in markdown
    _png_size((tmp_path / "report" / "search.png").read_bytes())
    run = tracking.client(uri).get_run(parent)
    assert run.info.status == "FINISHED"
    assert "best_val_dice" not in run.data.metrics
    assert run.data.metrics["total_gpu_hours"] == pytest.approx(0.002)


def test_summarize_of_no_rows() -> None:
    summary = summarize([])
    assert (summary.n_trials, summary.n_failed, summary.best_trial, summary.total_gpu_hours) == (0, 0, None, 0.0)
    assert summary.best_hyperparameters == {}
    assert summary.metrics() == {
        "total_gpu_hours": 0.0, "total_process_hours": 0.0, "search_gpu_hours": 0.0, "search_process_hours": 0.0, "n_trials": 0.0, "n_failed_trials": 0.0,
        "n_stopped_trials": 0.0, "trial_epochs_run": 0.0, "trial_epochs_saved": 0.0,
    }


# ------------------------------------------------------------------------------------------ the record and what render draws


def test_the_record_and_the_search_plot(study: StudyConfig, logged_study: tuple[str, str]) -> None:
    uri, parent = logged_study
    record = collect(study, parent, uri)
    assert isinstance(record, HpoRecord) and record.model_config.get("frozen")
    assert [row.trial_id for row in record.rows] == [*TRIALS, "final"]
    assert (record.summary.n_trials, record.summary.n_failed, record.summary.n_stopped, record.summary.best_trial) == (4, 1, 0, "r0-p1")
    rendered = render(record)
    assert rendered.kind == "hpo" and rendered.title == study.name and rendered.metrics == record.summary.metrics()
    assert rendered.documents == {"best_hyperparameters.json": record.summary.best_hyperparameters}
    # the search plot draws Optuna's study of the trials, their Dice in order of proposal (issue 22); the failed one's lr,
    # outside the space, has no place in it, but its title counts it
    from proxyhpo.analysis.study_plots import search_study

    searched = search_study(record.rows, study.search.space)
    assert [trial.state.name for trial in searched.trials] == ["COMPLETE"] * 3
    assert [trial.value for trial in searched.trials] == pytest.approx([0.52, 0.66, 0.61])
    assert searched.best_value == pytest.approx(0.66) and searched.trials[1].params["optimizer"] == "rmsprop"
    assert rendered.figures["search"]._suptitle.get_text() == "search: 3 trained to the end, 0 stopped early, 1 failed"


def test_a_stopped_trial_is_counted_stopped_in_the_hpo_report(study: StudyConfig, store: str, tmp_path: Path) -> None:
    """Real trial runs (tracking.trial_runs): finished, stopped early (KILLED, tagged STOPPED), failed, and one still running."""
    study = study.model_copy(update={"name": "stopped-trials"})
    parent = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=store)
    specs = [_spec(f"r0-p{i}", 0, 1e-3, "adam", 0.0, NetworkConfig.proxy(3)) for i in range(3)]
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=store, system_metrics=False) as runs:
        runs["r0-p0"].finish(_result(specs[0], [0.3, 0.6], 0.01))
        stopped = _result(specs[1], [0.9], 0.005).model_copy(update={"state": TrialState.STOPPED, "stopped_at_epoch": 1, "final_val_dice": 0.9})
        runs["r0-p1"].finish(stopped)
        runs["r0-p2"].finish(_result(specs[2], None, 0.001))
    client = tracking.client(store)
    running = {names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL, names.TRIAL_ID_TAG: "r0-p3"}
    client.create_run(client.get_run(parent).info.experiment_id, run_name="r0-p3", tags=running)  # a pod still training: no failure
    record = collect(study, parent, store)
    summary = record.summary
    assert (summary.n_trials, summary.n_finished, summary.n_stopped, summary.n_failed, summary.n_running) == (4, 1, 1, 1, 1)
    assert (summary.metrics()[names.N_FAILED_TRIALS], summary.metrics()[names.N_STOPPED_TRIALS]) == (1.0, 1.0)
    assert (summary.best_trial, summary.best_val_dice) == ("r0-p0", pytest.approx(0.6))  # the stopped trial's early 0.9 is no final Dice
    row = next(row for row in record.rows if row.trial_id == "r0-p1")
    assert (row.stopped, row.stopped_at_epoch, row.val_dice, row.stopped_dice) == (True, 1, None, pytest.approx(0.9))
    rendered = render(record)
    assert "4 search trials: 1 finished, 1 stopped early, 1 failed, 1 still running." in rendered.markdown
    assert "| r0-p1 | 0 | 0.001 | adam | 0 | – | stopped at epoch 1, Dice 0.9000 |" in rendered.markdown
    # the search plot: the stopped trial drawn at its rung, pruned with its Dice at the stop (issue 22)
    from proxyhpo.analysis.study_plots import search_study

    pruned = [trial for trial in search_study(record.rows, study.search.space).trials if trial.state.name == "PRUNED"]
    assert [trial.intermediate_values for trial in pruned] == [{1: pytest.approx(0.9)}]
    assert rendered.figures["search"]._suptitle.get_text() == "search: 1 trained to the end, 1 stopped early, 1 failed, 1 running"
