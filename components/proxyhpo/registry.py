"""One registry per kind of plug-in: similarity metrics, search strategies, network families, study pipelines.

A :class:`Registry` maps a name to a factory and the one-line description that opens the factory's
docstring. Targets are dotted paths (``"package.module:attribute"``) imported on first use, so the schema
layer, the CLI's parser and ``--help`` read every name without importing torch, MONAI, Optuna or kfp.
The config's validators, the CLI's choices, the pipeline catalogue and the reports all read the names
from here; none is written twice.

Adding a plug-in is its own file plus one line below, e.g.::

    SIMILARITY_METRICS.register("ssim", "proxyhpo.similarity.ssim:StructuralSimilarity", "mean structural similarity")

A test registers a throwaway entry for its own duration with :meth:`Registry.temporary`.

Example:
    >>> SEARCH_STRATEGIES.names()[:2]
    ('reinforce', 'random')
    >>> SEARCH_STRATEGIES.check("randm")
    Traceback (most recent call last):
    ...
    ValueError: unknown search strategy 'randm'; did you mean 'random'? (choices: reinforce, random, reinforce+sh, tpe+hyperband, tpe, tpe+asha, gp, cmaes, reinforce-paper)
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "Entry", "SIMILARITY_METRICS", "SEARCH_STRATEGIES", "NETWORK_FAMILIES", "STUDY_PIPELINES"]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered plug-in: its name, where its factory lives, and what it is in one line."""

    name: str
    target: str | Callable[..., Any]
    description: str


class Registry(Generic[T]):
    """Names of one kind of plug-in mapped to lazily imported factories.

    Args:
        kind: what an entry is, in words (``"search strategy"``); error messages use it.

    Example:
        >>> metrics = Registry("similarity metric")
        >>> metrics.register("mi", "proxyhpo.similarity.mutual_information:MutualInformation", "mutual information")
        >>> "mi" in metrics, metrics.names()
        (True, ('mi',))
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, target: str | Callable[..., Any], description: str) -> None:
        """Register ``name``; ``target`` is ``"module:attribute"`` (imported on first use) or the factory itself.

        Raises:
            ValueError: when ``name`` is empty, already registered, or ``target`` is not of either form.
        """
        if not name or not isinstance(name, str) or name != name.strip():
            raise ValueError(f"a {self.kind} needs a non-empty name without surrounding spaces, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered (by {self._entries[name].target!r})")
        if isinstance(target, str) and target.count(":") != 1:
            raise ValueError(f"{self.kind} '{name}': target must be 'package.module:attribute', got {target!r}")
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} '{name}': description must be one non-empty line, got {description!r}")
        self._entries[name] = Entry(name, target, description)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that registered a throwaway entry)."""
        self._entries.pop(name, None)
        self._loaded.pop(name, None)

    @contextmanager
    def temporary(self, name: str, target: str | Callable[..., Any], description: str) -> Iterator[None]:
        """Register ``name`` for the duration of a ``with`` block."""
        self.register(name, target, description)
        try:
            yield
        finally:
            self.unregister(name)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        """The registered entries, in registration order."""
        return tuple(self._entries.values())

    def describe(self, name: str) -> str:
        """The one-line description of ``name``."""
        return self._entries[self.check(name)].description

    def help(self) -> str:
        """``name: description`` of every entry, for a CLI option's help."""
        return "; ".join(f"{entry.name}: {entry.description}" for entry in self._entries.values())

    def check(self, name: str) -> str:
        """``name`` itself when registered (a pydantic ``AfterValidator`` and argparse ``type``).

        Raises:
            ValueError: naming the unknown entry, the closest registered one and every choice.
        """
        if name in self._entries:
            return name
        close = difflib.get_close_matches(str(name), self._entries, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown {self.kind} {name!r}{hint} (choices: {', '.join(self._entries)})")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        """The factory of ``name``, imported on first use."""
        entry = self._entries[self.check(name)]
        if name not in self._loaded:
            if isinstance(entry.target, str):
                module, attribute = entry.target.split(":")
                self._loaded[name] = getattr(importlib.import_module(module), attribute)
            else:
                self._loaded[name] = entry.target
        return self._loaded[name]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def docstring_summary(target: Any) -> str:
    """The first line of ``target``'s docstring (registry tests compare it with the registered description)."""
    return (getattr(target, "__doc__", None) or "").strip().splitlines()[0].strip() if getattr(target, "__doc__", None) else ""


#: All-pairs similarity engines; each also makes a ``NAME+labelcrop`` proxy data method.
SIMILARITY_METRICS: Registry[Any] = Registry("similarity metric")
SIMILARITY_METRICS.register("mi", "proxyhpo.similarity.mutual_information:MutualInformation", "Mutual information between quantised volumes, in nats.")
SIMILARITY_METRICS.register("ncc", "proxyhpo.similarity.local_ncc:LocalNCC", "Local normalised cross-correlation over a cubic window.")

#: Search strategies the HPO pipeline drives round by round through ask and tell.
SEARCH_STRATEGIES: Registry[Any] = Registry("search strategy")
SEARCH_STRATEGIES.register("reinforce", "proxyhpo.search._reinforce:ReinforceSearch", "The paper's RNN controller trained with REINFORCE, with our settings (normalised advantage, several steps a round).")
SEARCH_STRATEGIES.register("random", "proxyhpo.search._random:RandomSearch", "Independent uniform draws from the search space.")
SEARCH_STRATEGIES.register("reinforce+sh", "proxyhpo.search._reinforce:ReinforceHalvingSearch", "REINFORCE with successive halving inside its packs.")
SEARCH_STRATEGIES.register("tpe+hyperband", "proxyhpo.search._tpe_hyperband:TPEHyperbandSearch", "Optuna's TPE sampler with Hyperband in its packs.")
SEARCH_STRATEGIES.register("tpe", "proxyhpo.search._tpe:TPESearch", "Optuna's TPE sampler (its trials stopped only by the study's own early stopping, if any).")
SEARCH_STRATEGIES.register("tpe+asha", "proxyhpo.search._tpe_asha:TPEAshaSearch", "Optuna's TPE sampler with asynchronous successive halving in its packs.")
SEARCH_STRATEGIES.register("gp", "proxyhpo.search._gp:GPSearch", "Optuna's Gaussian-process sampler (its trials stopped only by the study's own early stopping, if any).")
SEARCH_STRATEGIES.register("cmaes", "proxyhpo.search._cmaes:CmaEsSearch", "Optuna's CMA-ES sampler over the continuous parameters (its trials stopped only by the study's own early stopping, if any).")
SEARCH_STRATEGIES.register("reinforce-paper", "proxyhpo.search._reinforce:PaperReinforceSearch", "The paper's RNN controller trained with REINFORCE, with the paper's settings (one Adam step per round on the raw advantage).")

#: Network families a trial trains; each declares how its proxy shrinks.
NETWORK_FAMILIES: Registry[Any] = Registry("network family")
NETWORK_FAMILIES.register("unet", "proxyhpo.networks.unet:ResidualUNet", "MONAI's residual U-Net, the paper's family (instance norm and PReLU are MONAI's defaults, not the paper's).")
NETWORK_FAMILIES.register("dynunet", "proxyhpo.networks.dynunet:NnUNet", "MONAI's DynUNet as nnU-Net configures it: kernels and strides from the spacing and patch, deep supervision.")
NETWORK_FAMILIES.register("segresnet", "proxyhpo.networks.segresnet:SegResNetFamily", "MONAI's SegResNet: residual encoder levels of group-normed blocks, one block per decoder level.")
NETWORK_FAMILIES.register("swinunetr", "proxyhpo.networks.swinunetr:SwinUNETRFamily", "MONAI's SwinUNETR: a Swin transformer encoder of four stages and a convolutional decoder (sides multiple of 32).")

#: Study pipelines: what ``proxyhpo run --pipeline`` runs and ``proxyhpo compile`` ships; a target builds the KFP
#: pipeline for a study config (``pipelines/``, which only ``proxyhpo.compile`` imports, and only when it compiles).
STUDY_PIPELINES: Registry[Any] = Registry("study pipeline")
STUDY_PIPELINES.register("hpo", "pipelines.hpo:build_hpo_pipeline", "Search hyper-parameters on proxy data and proxy networks, then train the final model on all data.")
STUDY_PIPELINES.register("proxy-data-study", "pipelines.studies:build_proxy_data_study", "Does a proxy data set rank the hyper-parameter grid like all data (the paper's Table 1, Figs. 2 and 4A/B)?")
STUDY_PIPELINES.register("proxy-net-study", "pipelines.studies:build_proxy_net_study", "Does a proxy U-Net rank the hyper-parameter grid like the full U-Net (the paper's Fig. 3)?")
STUDY_PIPELINES.register("trust", "pipelines.studies:build_trust_check", "Before a heavy search: does the study's proxy setting rank a small grid like all data and the full U-Net?")
STUDY_PIPELINES.register("automl-comparison", "pipelines.comparison:build_automl_comparison", "The search run in every arm, each result trained in full: Dice and GPU-hours (the paper's Table 2, Fig. 4C/D).")
STUDY_PIPELINES.register("nas", "pipelines.nas:build_nas_pipeline", "Resource-optimised NAS: an ENAS controller searches the U-Net macro space on a shared supernet, per fold.")
