"""One hyper-parameter vocabulary: a name added to the study's search space, and nowhere else, reaches the
optimiser, the trial's MLflow params and the report.

Weight decay is the example: every optimiser the trainer knows accepts it, and no code names it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from proxyhpo import tracking
from proxyhpo.analysis.report import collect_trials, render_markdown, summarize
from proxyhpo.config import NetworkConfig, TrialResult, TrialSpec, TrialState, load_study
from proxyhpo.controller import ReinforceController
from proxyhpo.training.pack import ModelPack
from proxyhpo.training.study_trials import hyperparameters_from

STUDY = """\
name: vocabulary
data: {dataset: d}
search:
  space:
    lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-2}
    weight_decay: {type: log_uniform, low: 1.0e-6, high: 1.0e-3}
"""


@pytest.fixture
def study(tmp_path: Path):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    return load_study(path)


def test_a_searched_name_reaches_optimiser_params_and_report(study, tmp_path: Path) -> None:
    proposals = ReinforceController(study.search.space, config=study.search.controller).propose(2)
    specs = [
        TrialSpec(trial_id=p.trial_id, hyperparameters=hyperparameters_from(dict(p.hyperparameters)), network=NetworkConfig.proxy(3), round=p.round)
        for p in proposals
    ]
    decays = [p.hyperparameters["weight_decay"] for p in proposals]
    assert [s.hyperparameters.weight_decay for s in specs] == decays
    assert len(set(decays)) == 2 and all(1e-6 <= d <= 1e-3 for d in decays)

    # the optimiser: each model's parameter group holds its own weight decay
    pack = ModelPack(specs)
    groups = [group for optimizer in pack.optimizers for group in optimizer.param_groups]
    assert sorted(group["weight_decay"] for group in groups) == sorted(decays)
    assert all(isinstance(optimizer, torch.optim.Adam) for optimizer in pack.optimizers)

    # MLflow: the search space's names are the trial's params, and only they
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.start_parent_run(study.name, "hpo", config=study.model_dump(mode="json"), tracking_uri=uri)
    with tracking.trial_runs(
        study.name, specs, parent_run_id=parent, data="mi+labelcrop-8", resolved_config={}, tracking_uri=uri,
        system_metrics=False, hyperparameter_names=study.search.space.names,
    ) as runs:
        for spec in specs:
            runs[spec.trial_id].finish(
                TrialResult(trial_id=spec.trial_id, state=TrialState.COMPLETE, hyperparameters=spec.hyperparameters, network=spec.network.name,
                            round=spec.round, val_epochs=[1], val_dice=[0.5], final_val_dice=0.5)
            )
    client = tracking.client(uri)
    for spec in specs:
        params = client.get_run(runs[spec.trial_id].run_id).data.params
        assert float(params["weight_decay"]) == pytest.approx(spec.hyperparameters.weight_decay)
        assert {"lr", "weight_decay", "network", "data"} <= set(params)
        assert "optimizer" not in params and "intensity_shift_prob" not in params  # not searched here

    # the report: one column per searched name, the best trial's values by the same names
    rows = collect_trials(parent, study.search.space, uri)
    assert [row.hyperparameters["weight_decay"] for row in rows] == pytest.approx(decays)
    summary = summarize(rows)
    assert set(summary.best_hyperparameters) == {"lr", "weight_decay"}
    markdown = render_markdown(study, summary, rows)
    assert "| trial | round | lr | weight_decay | val Dice | status |" in markdown
    assert "| weight_decay |" in markdown
