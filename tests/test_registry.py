"""One registry per kind of plug-in: a throwaway entry of each kind is accepted by the config, offered by the CLI
and driven through the real code path (a similarity matrix, one tiny trial), with no other file touched.

The study-pipeline registry's throwaway entry is compiled in ``tests/launch/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from proxyhpo.cli import main
from proxyhpo.config import (
    HyperParameters,
    NetworkConfig,
    Proposal,
    StudyConfig,
    TrialPlan,
    TrialResults,
    TrialSpec,
    TrialState,
    parse_config,
    selection_methods,
)
from proxyhpo.config.controller import HistoryRecord
from proxyhpo.errors import ConfigError
from proxyhpo.registry import NETWORK_FAMILIES, SEARCH_STRATEGIES, SIMILARITY_METRICS, STUDY_PIPELINES, Registry, docstring_summary
from proxyhpo.networks import NetworkFamily, build_network
from proxyhpo.search import Strategy, outcome_of
from proxyhpo.similarity._base import SimilarityMetric

REGISTRIES = {"metrics": SIMILARITY_METRICS, "strategies": SEARCH_STRATEGIES, "networks": NETWORK_FAMILIES, "pipelines": STUDY_PIPELINES}


# ------------------------------------------------------------------------------------------------ the registry itself
def test_a_registry_names_its_entries_in_order_and_loads_them_lazily() -> None:
    registry: Registry[object] = Registry("widget")
    registry.register("b", "json:dumps", "Serialise to JSON.")
    registry.register("a", json.loads, "Parse JSON.")
    assert registry.names() == ("b", "a") and "a" in registry and len(registry) == 2
    assert registry["b"] is json.dumps and registry["a"] is json.loads
    assert registry.describe("b") == "Serialise to JSON." and registry.help() == "b: Serialise to JSON.; a: Parse JSON."


@pytest.mark.parametrize(
    "name, target, description, message",
    [
        ("", "json:dumps", "x", "a widget needs a non-empty name"),
        (" a", "json:dumps", "x", "a widget needs a non-empty name without surrounding spaces"),
        ("b", "json.dumps", "x", "widget 'b': target must be 'package.module:attribute', got 'json.dumps'"),
        ("b", "json:dumps", "two\nlines", "widget 'b': description must be one non-empty line"),
        ("a", "json:dumps", "again", "widget 'a' is already registered"),
    ],
)
def test_a_bad_registration_is_refused_with_its_reason(name: str, target: str, description: str, message: str) -> None:
    registry: Registry[object] = Registry("widget")
    registry.register("a", "json:loads", "Parse JSON.")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.register(name, target, description)


def test_an_unknown_name_suggests_the_closest_and_lists_every_choice() -> None:
    with pytest.raises(ValueError) as caught:
        SEARCH_STRATEGIES.check("randm")
    assert str(caught.value) == "unknown search strategy 'randm'; did you mean 'random'? (choices: reinforce, random, reinforce+sh, tpe+hyperband, tpe, tpe+asha, gp, cmaes, reinforce-paper)"
    with pytest.raises(ValueError, match=r"^unknown network family 'transformer' \(choices: unet, dynunet, segresnet, swinunetr\)$"):
        NETWORK_FAMILIES.check("transformer")


def test_a_temporary_entry_is_gone_after_its_block() -> None:
    with SEARCH_STRATEGIES.temporary("throwaway", "json:dumps", "A throwaway."):
        assert "throwaway" in SEARCH_STRATEGIES
    assert "throwaway" not in SEARCH_STRATEGIES


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_entry_loads_and_its_description_is_its_docstring_summary(kind: str) -> None:
    registry = REGISTRIES[kind]
    assert len(registry) > 0
    for entry in registry.entries():
        target = registry[entry.name]
        assert docstring_summary(target) == entry.description, f"{kind} {entry.name}: register the first line of its docstring"
        if kind != "pipelines":
            assert target.name == entry.name  # a plug-in class knows its registry name


@pytest.mark.parametrize("kind", REGISTRIES)
def test_the_cli_lists_every_entry_with_its_description(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", kind]) == 0
    listed = capsys.readouterr().out
    for entry in REGISTRIES[kind].entries():
        assert f"  {entry.name} " in listed and entry.description in listed


# ------------------------------------------------------------------------------------------------ throwaway plug-ins
class NegativeSquaredDifference(SimilarityMetric):
    """Minus the mean squared difference of two volumes."""

    name = "negsq"

    def matrix(self, volumes, *, device="auto", progress=False) -> np.ndarray:
        flat = torch.as_tensor(np.asarray(volumes), dtype=torch.float64).flatten(1)
        return -(torch.cdist(flat, flat) ** 2 / flat.shape[1]).numpy()


class FixedLearningRates(Strategy):
    """Proposes the learning rates of a fixed list in turn."""

    name = "fixed-lrs"
    RATES = (0.05, 0.01, 0.002)

    def __init__(self, study: StudyConfig, seed: int) -> None:
        super().__init__(study, seed)
        self.next_id, self.round, self.pending, self.told = 0, 0, [], []

    def ask(self, n: int) -> list[Proposal]:
        self._check_n(n)
        proposals = [
            Proposal(proposal_id=i, round=self.round, hyperparameters={"lr": self.RATES[i % len(self.RATES)], "optimizer": "adam"}, log_prob=0.0)
            for i in range(self.next_id, self.next_id + n)
        ]
        self.next_id += n
        self.pending += proposals
        return proposals

    def tell(self, results) -> None:
        by_id = {int(result.tags["proposal_id"]): result for result in results}
        for proposal in self.pending:
            dice, stopped = outcome_of(by_id[proposal.proposal_id]) if proposal.proposal_id in by_id else (None, None)
            self.told.append(HistoryRecord(proposal=proposal, reward=dice, failed=dice is None, dice=dice, stopped_at_epoch=stopped))
        self.pending, self.round = [], self.round + 1

    def history(self) -> list[HistoryRecord]:
        return list(self.told)

    def save(self, path) -> Path:
        document = {"next_id": self.next_id, "round": self.round, "pending": [p.model_dump() for p in self.pending], "history": [h.model_dump() for h in self.told]}
        Path(path).write_text(json.dumps(document))
        return Path(path)

    @classmethod
    def restore(cls, study: StudyConfig, path) -> FixedLearningRates:
        document = json.loads(Path(path).read_text())
        strategy = cls(study, study.search.controller.seed)
        strategy.next_id, strategy.round = document["next_id"], document["round"]
        strategy.pending = [Proposal.model_validate(p) for p in document["pending"]]
        strategy.told = [HistoryRecord.model_validate(h) for h in document["history"]]
        return strategy


class PointwiseNet(NetworkFamily):
    """Two convolutions, no down-sampling: the smallest network that segments."""

    name = "pointwise"

    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        width = cfg.base_channels
        return nn.Sequential(nn.Conv3d(in_channels, width, 3, padding=1), nn.PReLU(), nn.Conv3d(width, out_channels, 1))


def _study(tmp_path: Path, **sections: dict) -> StudyConfig:
    document = {"name": "throwaway", "data": {"dataset": str(tmp_path / "data")}}
    for section, values in sections.items():
        document[section] = values
    return parse_config(StudyConfig, document, "study.yaml")


@pytest.fixture(scope="module")
def sphere_cases(tmp_path_factory: pytest.TempPathFactory) -> list:
    import importlib.util

    # tests/ is not a package under --import-mode=importlib: load the training tests' case writer by path
    spec = importlib.util.spec_from_file_location("_training_cases", Path(__file__).parent / "training" / "conftest.py")
    helpers = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(helpers)  # type: ignore[union-attr]
    return helpers.write_sphere_cases(tmp_path_factory.mktemp("spheres"), 6)


def _tiny_plan(cases: Sequence, trials: list[TrialSpec]) -> TrialPlan:
    from proxyhpo.config import HUWindow, Recipe

    recipe = Recipe(
        name="tiny", spacing=None, intensity=HUWindow(a_min=-57, a_max=164), patch_size=(16, 16, 16), num_samples=1,
        roi_size=(32, 32, 32), sw_batch_size=1, crop_foreground=False,
    )
    return TrialPlan(recipe=recipe, train=list(cases[:4]), val=list(cases[4:6]), epochs=2, trials=trials, device="cpu", num_workers=0)


def test_a_metric_registered_once_is_a_config_method_a_cli_choice_and_computes_a_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SIMILARITY_METRICS.temporary("negsq", NegativeSquaredDifference, "Minus the mean squared difference of two volumes."):
        assert selection_methods() == ("mi", "ncc", "negsq", "mi+labelcrop", "ncc+labelcrop", "negsq+labelcrop", "random")
        study = _study(tmp_path, selection={"method": "negsq+labelcrop", "budget": 2})
        assert (study.selection.metric, study.selection.crop) == ("negsq", "label")
        assert main(["synth", "spleen", "--out", str(tmp_path / "msd"), "--cases", "4", "--size", "32"]) == 0
        out = tmp_path / "similarity"
        assert main(["similarity", str(tmp_path / "msd"), "--metric", "negsq", "--patch", "16", "--out", str(out)]) == 0
        matrix = np.load(out / "similarity.npy")
        assert matrix.shape == (4, 4) and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 0.0) and (matrix <= 0).all()
        assert main(["plugins", "metrics"]) == 0 and "negsq" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="selection.method.*unknown proxy data method 'negsq'"):
        _study(tmp_path, selection={"method": "negsq"})


def test_a_strategy_registered_once_is_accepted_offered_and_driven_through_a_round_of_real_trials(
    tmp_path: Path, sphere_cases: list, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxyhpo.controller.rounds import final_hyperparameters, init_controller, propose_round, update_round
    from proxyhpo.config import PackSpec
    from proxyhpo.training import run_trials

    from proxyhpo.cli import build_parser

    with SEARCH_STRATEGIES.temporary("fixed-lrs", FixedLearningRates, "Proposes the learning rates of a fixed list in turn."):
        study = _study(tmp_path, search={"strategy": "fixed-lrs", "proposals_per_round": 2, "rounds": 1})
        assert study.search.strategy == "fixed-lrs"
        assert main(["plugins", "strategies"]) == 0 and "fixed-lrs" in capsys.readouterr().out
        args = build_parser().parse_args(["bench", "search", "bench.yaml", "--strategies", "fixed-lrs", "random"])
        assert args.strategies == ["fixed-lrs", "random"]
        init_controller(study, tmp_path / "state0.json")
        (pack,) = [PackSpec.model_validate_json(text) for text in propose_round(study, tmp_path / "state0.json", tmp_path / "proposed.json")]
        assert [p.hyperparameters["lr"] for p in pack.proposals] == [0.05, 0.01]
        specs = [
            TrialSpec(trial_id=p.trial_id, hyperparameters=HyperParameters(**p.hyperparameters), seed=1, tags={"proposal_id": str(p.proposal_id)})
            for p in pack.proposals
        ]
        results = run_trials(_tiny_plan(sphere_cases, specs), progress=False)
        assert [r.state for r in results] == [TrialState.COMPLETE, TrialState.COMPLETE]
        TrialResults(results=tuple(results)).write(tmp_path / "pack0.json")
        update_round(study, tmp_path / "proposed.json", [tmp_path / "pack0.json"], tmp_path / "state1.json")
        best = max(results, key=lambda r: r.final_val_dice)
        assert final_hyperparameters(study, tmp_path / "state1.json")["lr"] == best.hyperparameters.lr
    with pytest.raises(ConfigError, match="search.strategy.*unknown search strategy 'fixed-lrs'"):
        _study(tmp_path, search={"strategy": "fixed-lrs"})


def test_a_network_family_registered_once_is_accepted_offered_and_trains_a_tiny_trial(
    tmp_path: Path, sphere_cases: list, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxyhpo.training import run_trials

    with NETWORK_FAMILIES.temporary("pointwise", PointwiseNet, "Two convolutions, no down-sampling: the smallest network that segments."):
        study = _study(tmp_path, training={"network_family": "pointwise"})
        assert study.training.network_family == "pointwise"
        network = NetworkConfig.proxy(3, family="pointwise")
        assert network.name == "pointwise:proxy-L3"
        assert build_network(network)(torch.zeros(1, 1, 8, 8, 8)).shape == (1, 2, 8, 8, 8)
        assert main(["plugins", "networks"]) == 0 and "pointwise" in capsys.readouterr().out
        specs = [TrialSpec(trial_id=f"t{i}", hyperparameters=HyperParameters(lr=0.01), network=network, seed=i) for i in range(2)]
        results = run_trials(_tiny_plan(sphere_cases, specs), progress=False)  # two of its networks, trained as one pack
        assert [r.state for r in results] == [TrialState.COMPLETE] * 2 and all(r.network == "pointwise:proxy-L3" for r in results)
        assert all(r.final_val_dice is not None for r in results)
    with pytest.raises(ConfigError, match="training.network_family.*unknown network family 'pointwise'"):
        _study(tmp_path, training={"network_family": "pointwise"})
