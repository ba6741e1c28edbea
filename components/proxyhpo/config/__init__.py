"""The schema layer: pydantic models of everything a user writes or a stage hands on.

It imports no stage, no torch and no MONAI, so configs load and components start in well under a
second. Stages import it; it imports none of them. Modules, one per concept:

- :mod:`~proxyhpo.config.base`: the strict frozen base, versioned records, the one ValidationError
  translator, YAML loading.
- :mod:`~proxyhpo.config.study`: the study config (``examples/*.yaml``).
- :mod:`~proxyhpo.config.search_space`: the hyper-parameters searched, the one vocabulary of names.
- :mod:`~proxyhpo.config.selection`: the proxy data methods, read from the similarity-metric registry.
- :mod:`~proxyhpo.config.search_state`: the state of a search strategy without a model (random search).
- :mod:`~proxyhpo.config.controller`: controller settings, proposals, rewards, packs.
- :mod:`~proxyhpo.config.early_stopping`: successive halving inside packs (rungs, reduction factor).
- :mod:`~proxyhpo.config.nas_controller`: the NAS controller's settings, episode records and state.
- :mod:`~proxyhpo.config.recipe`, :mod:`~proxyhpo.config.network`: data recipes and U-Net configs.
- :mod:`~proxyhpo.config.nas_space`: the NAS search space, its decisions and architectures.
- :mod:`~proxyhpo.config.trial`: hyper-parameters, trial plans and trial results.
- :mod:`~proxyhpo.config.data`: the study's data split and the proxy data manifest.
- :mod:`~proxyhpo.config.nas`: the NAS settings of a study, its plan and fold results.
- :mod:`~proxyhpo.config.studies`: the paper's comparison studies, their grid, arms and cells.
- :mod:`~proxyhpo.config.packing`: what ``pack_size`` means (``"auto"`` resolved by one rule).
- :mod:`~proxyhpo.config.checkpoint`: the record of a pack's checkpoint.
"""

from proxyhpo.config.base import Record, StrictModel, brief, config_error, load_config, load_yaml, parse_config
from proxyhpo.config.controller import ControllerConfig, ControllerState, HistoryRecord, PackSpec, Proposal, UpdateStats
from proxyhpo.config.data import ProxyDataManifest, StudyData
from proxyhpo.config.early_stopping import EarlyStoppingConfig, rung_epochs
from proxyhpo.config.nas import NAS_SEARCH_DATA, NasChildConfig, NasConfig, NasFold, NasFoldResult, NasPlan, parse_search
from proxyhpo.config.network import NetworkConfig, check_patch_size
from proxyhpo.config.nas_space import DECISION_KINDS, Architecture, Decision, NasSearchSpace, NasSpaceConfig
from proxyhpo.config.recipe import PRESETS, HUWindow, Normalize, Recipe, load_preset, resolve_recipe
from proxyhpo.config.search_state import SearchState
from proxyhpo.config.selection import SelectionMethod, check_selection_method, selection_methods
from proxyhpo.config.search_space import Categorical, Choice, Distribution, LogUniform, SearchSpace, Uniform, default_search_space, parse_search_space
from proxyhpo.config.study import (
    DataConfig,
    FinalConfig,
    PipelineShape,
    ResourcesConfig,
    SearchConfig,
    SelectionConfig,
    SimilarityConfig,
    StudyConfig,
    SyntheticDataConfig,
    StudyRun,
    TrialSettings,
    load_study,
    study_from_json,
)
from proxyhpo.config.studies import (
    GridPoint,
    ProxyDataStudyConfig,
    ProxyNetStudyConfig,
    StudiesConfig,
    StudyCell,
    TrustConfig,
    grid_points,
)
from proxyhpo.config.trial import OPTIMIZER_OPTIONS, DataItem, FaultInjection, HyperParameters, TrialPlan, TrialResult, TrialResults, TrialSpec, TrialState
from proxyhpo.config.nas_controller import EpisodeStats, NasControllerConfig, NasControllerState
from proxyhpo.config.checkpoint import PACK_CHECKPOINT_VERSION, PackCheckpoint, TrialCheckpoint
from proxyhpo.config.packing import PackSize, resolve_pack_size

__all__ = [
    "Record", "StrictModel", "brief", "config_error", "load_config", "load_yaml", "parse_config",
    "ControllerConfig", "ControllerState", "HistoryRecord", "PackSpec", "Proposal", "UpdateStats",
    "ProxyDataManifest", "StudyData",
    "EarlyStoppingConfig", "rung_epochs",
    "NetworkConfig", "check_patch_size",
    "DECISION_KINDS", "Architecture", "Decision", "NasSearchSpace", "NasSpaceConfig",
    "PRESETS", "HUWindow", "Normalize", "Recipe", "load_preset", "resolve_recipe",
    "SearchState", "SelectionMethod", "check_selection_method", "selection_methods",
    "Categorical", "Choice", "Distribution", "LogUniform", "SearchSpace", "Uniform", "default_search_space", "parse_search_space",
    "DataConfig", "FinalConfig", "PipelineShape", "ResourcesConfig", "SearchConfig", "SelectionConfig",
    "SimilarityConfig", "StudyConfig", "StudyRun", "SyntheticDataConfig", "TrialSettings", "load_study", "study_from_json",
    "GridPoint", "ProxyDataStudyConfig", "ProxyNetStudyConfig", "StudiesConfig", "StudyCell", "TrustConfig", "grid_points",
    "OPTIMIZER_OPTIONS", "DataItem", "FaultInjection", "HyperParameters", "TrialPlan", "TrialResult", "TrialResults", "TrialSpec", "TrialState",
    "EpisodeStats", "NasControllerConfig", "NasControllerState",
    "PACK_CHECKPOINT_VERSION", "PackCheckpoint", "TrialCheckpoint", "PackSize", "resolve_pack_size",
    "NAS_SEARCH_DATA", "NasChildConfig", "NasConfig", "NasFold", "NasFoldResult", "NasPlan", "parse_search",
]
