"""The HPO pipeline's components.

Lightweight Python components on the runtime image (which holds kfp, so ``install_kfp_package=False``),
so ``kfp.local.SubprocessRunner`` runs them unchanged. The study config travels as one JSON string
parameter; artifacts carry what stages hand each other (data split, proxy manifest, controller state,
trial results, the model and the report).
"""


from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Model, Output, PipelineTaskFinalStatus

from proxyhpo.kfp.image import RUNTIME_IMAGE

component = dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)


@component
def start_study(study: str, pipeline: str, pipeline_run: str, study_run: Output[Artifact]):
    """Open the study's MLflow parent run; its id travels as a small artifact, because kfp 2.17's local
    runner replaces every task-output parameter entering a ParallelFor with the loop item."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.storage import atomic_write_text
    from proxyhpo.tracking import start_parent_run

    config = StudyConfig.model_validate_json(study)
    run_id = start_parent_run(config.name, pipeline, config=config.model_dump(mode="json"), pipeline_run=pipeline_run)
    atomic_write_text(study_run.path, run_id)
    study_run.metadata.update({"mlflow_run_id": run_id, "experiment": config.name})


@component
def close_study(study: str, pipeline_run: str, status: PipelineTaskFinalStatus):
    """The exit handler: when the pipeline did not succeed, mark its MLflow study and trial runs FAILED."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.tracking import fail_open_study_runs

    if status.state != "SUCCEEDED":
        fail_open_study_runs(StudyConfig.model_validate_json(study).name, pipeline_run)


@component
def prepare_data(study: str, data: Output[Artifact]):
    """Generate (if configured), stage and validate the data set; write its split."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.data.prepare import prepare_study_data
    from proxyhpo.storage import atomic_write_text

    summary = prepare_study_data(StudyConfig.model_validate_json(study))
    atomic_write_text(data.path, summary.model_dump_json(indent=2))
    data.metadata.update({"search_cases": len(summary.search_ids), "holdout_cases": len(summary.holdout_ids)})


@component
def select_data(study: str, data: Input[Artifact], manifest: Output[Artifact]):
    """Choose the search data: the proxy data set (least similar cases) or all search cases."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.data.prepare import StudyData
    from proxyhpo.similarity.proxy_data import select_for_study
    from proxyhpo.storage import atomic_write_text

    chosen = select_for_study(StudyConfig.model_validate_json(study), StudyData.model_validate_json(open(data.path).read()))
    atomic_write_text(manifest.path, chosen.model_dump_json(indent=2))
    manifest.metadata.update({"method": chosen.method, "budget": chosen.budget, "cases": chosen.case_ids})


@component
def controller_init(study: str, state: Output[Artifact]):
    """Create the REINFORCE controller's initial state."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.controller import ReinforceController

    config = StudyConfig.model_validate_json(study)
    ReinforceController(config.search.space, config=config.search.controller).save(state.path)


@component
def controller_propose(study: str, state: Input[Artifact], proposed: Output[Artifact]) -> List[str]:
    """Sample one round's proposals and group them into packs (one JSON string per pack)."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.controller.rounds import packs_as_json, propose_round

    return packs_as_json(propose_round(StudyConfig.model_validate_json(study), state.path, proposed.path))


@component
def train_pack(study: str, pack: str, study_run: Input[Artifact], data: Input[Artifact], manifest: Input[Artifact], results: Output[Artifact]):
    """Train one pack of trials on one GPU; each trial becomes an MLflow child run."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.controller.rounds import PackSpec
    from proxyhpo.data.prepare import StudyData
    from proxyhpo.similarity.proxy_data import ProxyDataManifest
    from proxyhpo.training.study_api import train_pack as train

    train(
        StudyConfig.model_validate_json(study),
        StudyData.model_validate_json(open(data.path).read()),
        ProxyDataManifest.model_validate_json(open(manifest.path).read()),
        PackSpec.model_validate_json(pack),
        parent_run_id=open(study_run.path).read().strip(),
        results_out=results.path,
    )


@component
def controller_update(proposed: Input[Artifact], results: Input[List[Artifact]], state: Output[Artifact]):
    """Reward the round's proposals with their validation Dice and take one REINFORCE step."""
    from proxyhpo.controller.rounds import update_round

    stats = update_round(proposed.path, [result.path for result in results], state.path)
    state.metadata.update({"round": stats.round, "mean_reward": stats.mean_reward, "failed": stats.n_failed})


@component
def final_training(
    study: str, study_run: Input[Artifact], data: Input[Artifact], state: Input[Artifact], model: Output[Model], result: Output[Artifact]
):
    """Train the full network on all search cases with the best hyper-parameters found."""
    import os

    from proxyhpo.config import StudyConfig
    from proxyhpo.controller import ReinforceController
    from proxyhpo.data.prepare import StudyData
    from proxyhpo.errors import TrialError
    from proxyhpo.training.study_api import train_final

    best = ReinforceController.load(state.path).best()
    if best is None:
        raise TrialError("every search trial failed: there are no hyper-parameters to train the final model with; see the trial runs' fail reasons in MLflow")
    os.makedirs(model.path, exist_ok=True)
    final = train_final(
        StudyConfig.model_validate_json(study),
        StudyData.model_validate_json(open(data.path).read()),
        dict(best[0].values),
        parent_run_id=open(study_run.path).read().strip(),
        results_out=result.path,
        model_dir=model.path,
    )
    model.metadata.update({"val_dice": final.final_val_dice, "test_dice": final.test_dice, "hyper": final.hyper.model_dump()})


@component
def report(
    study: str, study_run: Input[Artifact], state: Input[Artifact], final_result: Input[Artifact], markdown: Output[Markdown], html: Output[HTML], metrics: Output[Metrics]
) -> str:
    """Write the study report (Markdown, HTML with plots, KFP metrics), log it to MLflow, close the parent run."""
    import base64
    import html as html_text
    import os
    import tempfile

    from proxyhpo.analysis.report import build_report
    from proxyhpo.config import StudyConfig

    out = tempfile.mkdtemp(prefix="report-")
    summary, text = build_report(StudyConfig.model_validate_json(study), open(study_run.path).read().strip(), out, controller_state=state.path)
    with open(markdown.path, "w") as handle:
        handle.write(text)
    image = base64.b64encode(open(os.path.join(out, "search.png"), "rb").read()).decode()
    with open(html.path, "w") as handle:
        handle.write(f"<html><body><img src='data:image/png;base64,{image}'/><pre>{html_text.escape(text)}</pre></body></html>")
    for key, value in summary.metrics().items():
        metrics.log_metric(key, value)
    return summary.model_dump_json()
