"""The pipelines' components: thin wrappers, each reading its inputs, making one library call and
writing its outputs.

Lightweight Python components on the runtime image (which holds kfp, so ``install_kfp_package=False``),
so ``kfp.local.SubprocessRunner`` runs them unchanged. The first task resolves the run's study (the
``study_config`` parameter with the run's data set, external set and name) and hands it with the MLflow
run to every other task in one :class:`~proxyhpo.config.StudyRun` artifact; artifacts also carry the
versioned records stages hand each other (the data split, the proxy manifest, the controller state,
trial results), the model and the report. Imports stay inside the functions: KFP ships each function's
source alone, and a component that does not train never loads torch.
"""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Model, Output, PipelineTaskFinalStatus

from proxyhpo.kfp.image import RUNTIME_IMAGE

component = dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)


@component
def start_study(
    study: str,
    dataset: str,
    external: str,
    study_name: str,
    pipeline: str,
    pipeline_run: str,
    compiled_shape: str,
    study_run: Output[Artifact],
    resume_run: str = "",
    typed_fields: bool = False,
    epochs: int = 0,
    proposals_per_round: int = 0,
    budget: int = 0,
    pack_size: int = 0,
    early_stopping: bool = False,
):
    """Resolve the run's study (its config with the run's data, name and, with ``typed_fields``, the launch form's
    fields, :mod:`proxyhpo.launch_form`), check it against the compiled pipeline, and open its MLflow parent run
    (``resume_run``: reopen that one, :mod:`proxyhpo.cluster_resume`)."""
    import os

    from proxyhpo.config import PipelineShape, study_from_json
    from proxyhpo.study import open_study

    if typed_fields:
        from proxyhpo.launch_form import with_run_fields

        fields = {"epochs": epochs, "proposals_per_round": proposals_per_round, "budget": budget, "pack_size": pack_size}
        study = with_run_fields(study, **fields, early_stopping=early_stopping)
    resolved = study_from_json(study, dataset=dataset, external=external, name=study_name)
    if resume_run:  # the trials the stopped run finished are kept under the parent's folder in the bucket: not trained again
        from proxyhpo.cluster_resume import reopen_parent
        from proxyhpo.resume import PARENT_ENV

        os.environ[PARENT_ENV] = reopen_parent(resolved, resume_run, pipeline_run=pipeline_run)
    run = open_study(
        resolved,
        pipeline=pipeline,
        pipeline_run=pipeline_run,
        compiled=PipelineShape.model_validate_json(compiled_shape),
        out=study_run.path,
    )
    study_run.metadata.update({"mlflow_run_id": run.run_id, "experiment": run.experiment, "dataset": run.study.data.dataset})


@component
def close_study(study: str, study_name: str, pipeline_run: str, status: PipelineTaskFinalStatus):
    """The exit handler: when the pipeline did not succeed, mark its MLflow study and trial runs FAILED."""
    from proxyhpo.config import study_from_json
    from proxyhpo.study import close_study as close

    close(study_from_json(study, name=study_name), pipeline_run=pipeline_run, succeeded=status.state == "SUCCEEDED")


@component
def close_open_runs(study: str, study_name: str, pipeline_run: str):
    """The exit handler on a backend without final status (KFP < 2.14): mark the MLflow runs the run left open FAILED
    (after a successful run the report has closed them all, so nothing is)."""
    from proxyhpo.config import study_from_json
    from proxyhpo.study import close_study as close

    close(study_from_json(study, name=study_name), pipeline_run=pipeline_run, succeeded=False)


@component
def prepare_data(study_run: Input[Artifact], data: Output[Artifact]):
    """Generate (if configured), stage and validate the data set; write its split."""
    from proxyhpo.config import StudyRun
    from proxyhpo.data.prepare import prepare_study_data

    prepared = prepare_study_data(StudyRun.read(study_run.path).study)
    prepared.write(data.path)
    data.metadata.update({"search_cases": len(prepared.search_ids), "holdout_cases": len(prepared.holdout_ids)})


@component
def select_data(study_run: Input[Artifact], data: Input[Artifact], manifest: Output[Artifact]):
    """Choose the search data and its train/validation split: the proxy data set (least similar cases) or all search cases."""
    from proxyhpo.config import StudyData, StudyRun
    from proxyhpo.similarity.proxy_data import select_for_study

    chosen = select_for_study(StudyRun.read(study_run.path).study, StudyData.read(data.path))
    chosen.write(manifest.path)
    manifest.metadata.update({"method": chosen.method, "budget": chosen.budget, "cases": list(chosen.case_ids)})


@component
def controller_init(study_run: Input[Artifact], state: Output[Artifact], arm: str = ""):
    """Create the search strategy's initial state (``arm``: the automl comparison's search, whose early stopping sets the REINFORCE reward)."""
    from proxyhpo.config import StudyRun
    from proxyhpo.controller.rounds import init_controller

    study = StudyRun.read(study_run.path).study
    init_controller(study.for_search_arm(arm) if arm else study, state.path)


@component
def controller_propose(study_run: Input[Artifact], state: Input[Artifact], proposed: Output[Artifact], arm: str = "") -> List[str]:
    """Ask the search strategy for one round's proposals and group them into packs (one JSON string per pack; ``arm``: as its search packs them)."""
    from proxyhpo.config import StudyRun
    from proxyhpo.controller.rounds import propose_round

    study = StudyRun.read(study_run.path).study
    return propose_round(study.for_search_arm(arm) if arm else study, state.path, proposed.path)


@component
def train_pack(
    pack: str,
    study_run: Input[Artifact],
    data: Input[Artifact],
    manifest: Input[Artifact],
    results: Output[Artifact],
    arm: str = "",
    relay_run: str = "",
    relay_group: str = "",
):
    """Train one pack of trials on one GPU; each trial becomes an MLflow child run (``arm``: the automl comparison's search;
    ``relay_*``: on KFP < 2.14, the results are also relayed to the round's update, :mod:`proxyhpo.relay`)."""
    from proxyhpo.config import PackSpec, ProxyDataManifest, StudyData, StudyRun
    from proxyhpo.training.study_trials import train_pack as train

    run = StudyRun.read(study_run.path)
    for attempt in range(3):  # a crash (the pack's trials all FAILED) is retried here: a loop's set_retry may not fire (KFP #12389)
        trained = train(
            run.study,
            StudyData.read(data.path),
            ProxyDataManifest.read(manifest.path),
            PackSpec.model_validate_json(pack),
            parent_run_id=run.run_id,
            results_out=results.path,
            arm=arm or None,
        )
        if not all((result.fail_reason or "").startswith("pack crashed") for result in trained):
            break
        print(f"pack crashed (attempt {attempt + 1} of 3)")
    if relay_run:
        from proxyhpo.relay import put, relay_folder

        put(results.path, relay_folder(run.run_id, pipeline_run=relay_run, group=relay_group), item=pack)


@component
def controller_update(
    study_run: Input[Artifact], proposed: Input[Artifact], results: Input[List[Artifact]], state: Output[Artifact], packs: List[str], arm: str = ""
):
    """Tell the search strategy the round's results (REINFORCE: reward them with their validation Dice and take one step);
    more failed ``packs`` than ``search.max_failed_packs`` fail the round."""
    from proxyhpo.config import StudyRun
    from proxyhpo.controller.rounds import update_round

    study = StudyRun.read(study_run.path).study
    files = [result.path for result in results]
    stats = update_round(study.for_search_arm(arm) if arm else study, proposed.path, files, state.path, expected_packs=len(packs))
    state.metadata.update({"round": stats.round, "mean_reward": stats.mean_reward, "failed": stats.n_failed})


@component
def controller_update_relayed(
    study_run: Input[Artifact], proposed: Input[Artifact], state: Output[Artifact], packs: List[str], relay_run: str, relay_group: str, arm: str = ""
):
    """:func:`controller_update` on KFP < 2.14: the round's results are read from the relay folder (:mod:`proxyhpo.relay`)."""
    from proxyhpo.config import StudyRun
    from proxyhpo.controller.rounds import update_round
    from proxyhpo.relay import gathered

    run = StudyRun.read(study_run.path)
    results = gathered(run.run_id, pipeline_run=relay_run, group=relay_group)
    stats = update_round(run.study.for_search_arm(arm) if arm else run.study, proposed.path, results, state.path, expected_packs=len(packs))
    state.metadata.update({"round": stats.round, "mean_reward": stats.mean_reward, "failed": stats.n_failed})


@component
def final_training(
    study_run: Input[Artifact],
    data: Input[Artifact],
    state: Input[Artifact],
    model: Output[Model],
    result: Output[Artifact],
    arm: str = "",
    repeat: int = 0,
):
    """Train the final model (full network, search-train cases; tested on the held-out ones) with the best hyper-parameters found (by ``arm``'s search)."""
    from proxyhpo.config import StudyData, StudyRun
    from proxyhpo.training.study_trials import train_final

    run = StudyRun.read(study_run.path)
    final = train_final(
        run.study,
        StudyData.read(data.path),
        state.path,
        parent_run_id=run.run_id,
        results_out=result.path,
        model_dir=model.path,
        arm=arm or None,
        repeat=repeat,
    )
    model.metadata.update(
        {
            "val_dice": final.final_val_dice,
            "internal_test_dice": final.internal_test_dice,
            "test_dice": final.test_dice,
            "hyperparameters": final.hyperparameters.model_dump(),
        }
    )


@component
def report(
    study_run: Input[Artifact], state: Input[Artifact], final_result: Input[Artifact], markdown: Output[Markdown], html: Output[HTML], metrics: Output[Metrics]
) -> str:
    """Write the study report (Markdown, HTML with plots, KFP metrics), log it to MLflow, close the parent run."""
    from proxyhpo.analysis.report import write_report
    from proxyhpo.config import StudyRun

    run = StudyRun.read(study_run.path)
    summary = write_report(run.study, run.run_id, state.path, markdown=markdown.path, html=html.path)
    for key, value in summary.metrics().items():
        metrics.log_metric(key, value)
    return summary.model_dump_json()


# --- the comparison studies (proxy-data study, proxy-net study, trust check) --------------------------------


@component
def plan_cells(kind: str, study_run: Input[Artifact], data: Input[Artifact], cells: Output[Artifact]) -> List[str]:
    """Choose every cell's data (similarities computed once per method) and log the plan on the study run."""
    from proxyhpo.config import StudyData, StudyRun
    from proxyhpo.study import plan_study

    run = StudyRun.read(study_run.path)
    return plan_study(run.study, StudyData.read(data.path), kind, parent_run_id=run.run_id, out=cells.path)


@component
def train_cell(
    cell: str, study_run: Input[Artifact], data: Input[Artifact], results: Output[Artifact], role: str = "trial", relay_run: str = "", relay_group: str = ""
):
    """Train one cell's grid (one arm in one repeat) on one GPU; each trial becomes an MLflow child run (``relay_*``: as
    :func:`train_pack`'s)."""
    from proxyhpo.config import StudyCell, StudyData, StudyRun
    from proxyhpo.training.study_trials import train_cell as train

    run = StudyRun.read(study_run.path)
    train(
        run.study,
        StudyData.read(data.path),
        StudyCell.model_validate_json(cell),
        parent_run_id=run.run_id,
        results_out=results.path,
        role=role,
    )
    if relay_run:
        from proxyhpo.relay import put, relay_folder

        put(results.path, relay_folder(run.run_id, pipeline_run=relay_run, group=relay_group), item=cell)


@component
def study_report(study_run: Input[Artifact], results: Input[List[Artifact]], markdown: Output[Markdown], html: Output[HTML], metrics: Output[Metrics]) -> str:
    """Correlations, tables, plots and costs from a comparison study's MLflow runs; logged on the study run, which it
    closes. ``results`` orders it after the cells' training tasks (a loop's tasks are waited for by collecting them)."""
    from proxyhpo.analysis.study_report import write_study_report
    from proxyhpo.config import StudyRun

    report = write_study_report(StudyRun.read(study_run.path).run_id, markdown=markdown.path, html=html.path)
    for key, value in report.metrics.items():
        metrics.log_metric(key, value)
    return report.verdict.message if report.verdict is not None else f"{report.kind}: {len(results)} cells reported"


@component
def study_report_relayed(study_run: Input[Artifact], relay_run: str, relay_group: str, markdown: Output[Markdown], html: Output[HTML], metrics: Output[Metrics]) -> str:
    """:func:`study_report` on KFP < 2.14, ordered after the cells' loop; it counts the cells relayed (:mod:`proxyhpo.relay`)."""
    from proxyhpo.analysis.study_report import write_study_report
    from proxyhpo.config import StudyRun
    from proxyhpo.relay import gathered

    run = StudyRun.read(study_run.path)
    report = write_study_report(run.run_id, markdown=markdown.path, html=html.path)
    for key, value in report.metrics.items():
        metrics.log_metric(key, value)
    cells = gathered(run.run_id, pipeline_run=relay_run, group=relay_group)
    return report.verdict.message if report.verdict is not None else f"{report.kind}: {len(cells)} cells reported"


@component
def select_arm_data(arm: str, study_run: Input[Artifact], data: Input[Artifact], manifest: Output[Artifact]):
    """The automl comparison: choose one search arm's data (proxy, random or all) and log it on the study run."""
    from proxyhpo.config import StudyData, StudyRun
    from proxyhpo.study import select_arm_data as select

    run = StudyRun.read(study_run.path)
    chosen = select(run.study, StudyData.read(data.path), arm, parent_run_id=run.run_id, out=manifest.path)
    manifest.metadata.update({"arm": arm, "method": chosen.method, "budget": chosen.budget})


@component
def comparison_report(study_run: Input[Artifact], markdown: Output[Markdown], html: Output[HTML], metrics: Output[Metrics]) -> str:
    """The automl comparison's report (Table 2, Fig. 4C/D) from the study's MLflow runs; logged on the study run,
    which it closes. It runs after every final model (``.after``: its arms are unrolled, not a loop to collect)."""
    from proxyhpo.analysis.study_report import write_study_report
    from proxyhpo.config import StudyRun

    report = write_study_report(StudyRun.read(study_run.path).run_id, markdown=markdown.path, html=html.path)
    for key, value in report.metrics.items():
        metrics.log_metric(key, value)
    return report.kind


@component
def trust_gate(study_run: Input[Artifact], results: Input[List[Artifact]]) -> str:
    """The HPO search's trust gate: the trust check's verdict on the calibration cells; fails the run unless trusted."""
    from proxyhpo.config import StudyRun
    from proxyhpo.study import check_trust

    return check_trust(StudyRun.read(study_run.path).study, [result.path for result in results]).message


@component
def trust_gate_relayed(study_run: Input[Artifact], relay_run: str, relay_group: str) -> str:
    """:func:`trust_gate` on KFP < 2.14: the calibration cells' results are read from the relay folder (:mod:`proxyhpo.relay`)."""
    from proxyhpo.config import StudyRun
    from proxyhpo.relay import gathered
    from proxyhpo.study import check_trust

    run = StudyRun.read(study_run.path)
    return check_trust(run.study, gathered(run.run_id, pipeline_run=relay_run, group=relay_group)).message
