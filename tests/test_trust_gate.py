"""The HPO search's trust gate: the verdict on the calibration cells' results, and the compiled pipeline's gate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxyhpo.config import HyperParameters, StudyConfig, TrialResult, TrialResults, TrialState
from proxyhpo.errors import TrialError
from proxyhpo.catalogue import shipped_study
from proxyhpo.compile import compile_study
from proxyhpo.study import check_trust

LRS = (0.01, 0.006, 0.003, 0.001, 0.0006, 0.0003)  # six points: the fewest on which spearman >= 0.5 at 95% can pass


def _study(threshold: float = 0.5, metric: str = "spearman") -> StudyConfig:
    return StudyConfig.model_validate(
        {"name": "gate", "data": {"dataset": "d"}, "search": {"trust_gate": True}, "studies": {"trust": {"grid": {"lr": list(LRS)}, "metric": metric, "threshold": threshold}}}
    )


def _results(tmp_path: Path, proxy_dice: list[float | None]) -> list[Path]:
    """Two repeats of both arms; the reference's Dice falls with the learning rate, the proxy's is given per point."""
    files = []
    for arm, dice in (("full", [0.8, 0.7, 0.6, 0.5, 0.4, 0.3]), ("proxy", proxy_dice)):
        for repeat in range(2):
            results = []
            for index, (lr, value) in enumerate(zip(LRS, dice, strict=True)):
                results.append(
                    TrialResult(
                        trial_id=f"{arm}-r{repeat}-p{index:02d}",
                        state=TrialState.COMPLETE if value is not None else TrialState.FAILED,
                        hyperparameters=HyperParameters(lr=lr),
                        network="proxy-L3",
                        final_val_dice=None if value is None else value + 0.01 * repeat,
                        process_hours=0.01,
                        steps_run=10,
                        tags={"study": "trust", "arm": arm, "repeat": str(repeat), "point": f"lr={lr}"},
                    )
                )
            files.append(TrialResults(results=tuple(results)).write(tmp_path / f"{arm}-{repeat}.json"))
    return files


def test_a_trusted_proxy_lets_the_search_start(tmp_path: Path) -> None:
    verdict = check_trust(_study(), _results(tmp_path, [0.5, 0.45, 0.3, 0.2, 0.15, 0.1]))
    assert verdict.passed is True and verdict.value == pytest.approx(1.0)
    assert verdict.message.startswith("proxy trusted: spearman 1.00")


def test_an_untrusted_proxy_stops_the_search(tmp_path: Path) -> None:
    with pytest.raises(TrialError, match=r"the search stops before it starts: proxy not trusted: spearman -1.00 .* < 0.5"):
        check_trust(_study(), _results(tmp_path, [0.1, 0.15, 0.2, 0.3, 0.45, 0.5]))


def test_a_high_coefficient_whose_bound_misses_the_threshold_stops_the_search(tmp_path: Path) -> None:
    # rho = 0.89 >= 0.5 (trusted by the point estimate), but its one-sided 95% interval over six points reaches down to 0.27
    with pytest.raises(TrialError, match=r"proxy not trusted: spearman 0.89 over 6 grid points, one-sided 95% interval \[0.27, 1\] < 0.5"):
        check_trust(_study(), _results(tmp_path, [0.45, 0.5, 0.3, 0.2, 0.1, 0.15]))


def test_an_undecided_verdict_stops_the_search(tmp_path: Path) -> None:
    # every proxy trial failed: no correlation, no trust
    with pytest.raises(TrialError, match="proxy trust undecided"):
        check_trust(_study(), _results(tmp_path, [None] * 6))


def test_the_gate_is_compiled_only_when_asked_for(tmp_path: Path) -> None:
    demo = shipped_study("demo")
    document = demo.model_dump(mode="json")
    document["search"]["trust_gate"] = True
    gated = yaml.safe_load_all(compile_study(StudyConfig.model_validate(document), tmp_path / "gated.yaml").read_text())
    plain = yaml.safe_load_all(compile_study(demo, tmp_path / "plain.yaml").read_text())
    tasks = next(gated)["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert "trust-gate" in tasks and "plan-cells" in tasks
    assert "trust-gate" in tasks["select-data"]["dependentTasks"]
    assert "trust-gate" in tasks["controller-init"]["dependentTasks"]
    calibration = next(task for name, task in tasks.items() if name.startswith("for-loop"))
    assert "plan-cells" in calibration["dependentTasks"]
    assert not {"trust-gate", "plan-cells"} & set(next(plain)["components"]["comp-exit-handler-1"]["dag"]["tasks"])
