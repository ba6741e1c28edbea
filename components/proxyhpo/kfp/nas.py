"""The NAS pipeline's components: thin wrappers around :mod:`proxyhpo.training.nas_search`,
:mod:`proxyhpo.training.nas_export` and :mod:`proxyhpo.analysis.nas_report`.

A search is named by one string, ``"<arm>/<fold>"`` (``all/0``, ``proxy/3``): the ``ParallelFor`` item
over every fold and arm (kfp 2.17's local runner cannot loop over structured items' fields).
"""

from typing import List

from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Model, Output

from proxyhpo.kfp.components import component


@component
def nas_plan(study_run: Input[Artifact], data: Input[Artifact], plan: Output[Artifact]) -> List[str]:
    """Resolve the search space from the data, cut the nested folds (search-train, search-validation, test), choose proxy data; return the searches (``arm/fold``)."""
    from proxyhpo.config import StudyData, StudyRun
    from proxyhpo.training.nas_search import plan_nas

    study = StudyRun.read(study_run.path).study
    planned = plan_nas(study, StudyData.read(data.path), out=plan.path)
    plan.metadata.update({"decisions": len(planned.space.decisions), "folds": len(planned.folds), "internal_test_cases": len(planned.internal_test_ids)})
    return [f"{arm}/{fold.fold}" for arm in study.nas.arms for fold in planned.folds]


@component
def nas_init(study_run: Input[Artifact], plan: Input[Artifact], search: str, state: Output[Artifact]):
    """The initial state of one search: a fresh supernet, its optimiser and a fresh controller."""
    from proxyhpo.config import StudyRun
    from proxyhpo.config.nas import NasPlan, parse_search
    from proxyhpo.training.nas_search import init_search

    arm, fold = parse_search(search)
    init_search(StudyRun.read(study_run.path).study, NasPlan.read(plan.path), fold, arm, out=state.path)


@component
def nas_search(
    study_run: Input[Artifact], data: Input[Artifact], plan: Input[Artifact], search: str, task: int, state_in: Input[Artifact], state: Output[Artifact]
):
    """Run one task's episodes of one search (train the children on the shared weights, reward, update the controller)."""
    from proxyhpo.config import StudyData, StudyRun
    from proxyhpo.config.nas import NasPlan, parse_search
    from proxyhpo.training.nas_search import search_episodes

    run = StudyRun.read(study_run.path)
    arm, fold = parse_search(search)
    episodes = search_episodes(
        run.study, StudyData.read(data.path), NasPlan.read(plan.path), fold, arm,
        task=task, state_in=state_in.path, state_out=state.path, parent_run_id=run.run_id,
    )
    if episodes:
        state.metadata.update({"episode": episodes[-1].episode, "mean_reward": episodes[-1].mean_reward, "entropy": episodes[-1].entropy})


@component
def nas_evaluate(
    study_run: Input[Artifact],
    data: Input[Artifact],
    plan: Input[Artifact],
    search: str,
    state: Input[Artifact],
    model: Output[Model],
    result: Output[Artifact],
    relay_run: str = "",
    relay_group: str = "",
):
    """Export the search's final network (no retraining) and test it on the fold's test part (read by no search) and the study's held-out cases
    (``relay_*``: on KFP < 2.14, the result is also relayed to the report, :mod:`proxyhpo.relay`)."""
    from proxyhpo.config import StudyData, StudyRun
    from proxyhpo.config.nas import NasPlan, parse_search
    from proxyhpo.training.nas_export import evaluate_fold

    run = StudyRun.read(study_run.path)
    arm, fold = parse_search(search)
    found = evaluate_fold(
        run.study, StudyData.read(data.path), NasPlan.read(plan.path), fold, arm,
        state_in=state.path, model_dir=model.path, out=result.path, parent_run_id=run.run_id,
    )
    model.metadata.update({"architecture": found.architecture.name, "test_dice": found.test_dice, "search_validation_dice": found.search_validation_dice})
    if relay_run:
        from proxyhpo.relay import put, relay_folder

        put(result.path, relay_folder(run.run_id, pipeline_run=relay_run, group=relay_group), item=search)


@component
def nas_report(study_run: Input[Artifact], plan: Input[Artifact], results: Input[List[Artifact]], markdown: Output[Markdown], page: Output[HTML], metrics: Output[Metrics]):
    """Summarise the folds, plot the controller per episode, log it on the study run and close it."""
    from proxyhpo.analysis.nas_report import write_nas_report
    from proxyhpo.config import StudyRun
    from proxyhpo.config.nas import NasPlan

    run = StudyRun.read(study_run.path)
    summary = write_nas_report(run.study, NasPlan.read(plan.path), [r.path for r in results], run.run_id, markdown=markdown.path, html=page.path)
    for key, value in summary["metrics"].items():
        metrics.log_metric(key, value)


@component
def nas_report_relayed(study_run: Input[Artifact], plan: Input[Artifact], relay_run: str, relay_group: str, markdown: Output[Markdown], page: Output[HTML], metrics: Output[Metrics]):
    """:func:`nas_report` on KFP < 2.14: the folds' results are read from the relay folder (:mod:`proxyhpo.relay`)."""
    from proxyhpo.analysis.nas_report import write_nas_report
    from proxyhpo.config import StudyRun
    from proxyhpo.config.nas import NasPlan
    from proxyhpo.relay import gathered

    run = StudyRun.read(study_run.path)
    results = gathered(run.run_id, pipeline_run=relay_run, group=relay_group)
    summary = write_nas_report(run.study, NasPlan.read(plan.path), results, run.run_id, markdown=markdown.path, html=page.path)
    for key, value in summary["metrics"].items():
        metrics.log_metric(key, value)
