"""The network family's protocol: a segmentation network built from a :class:`~proxyhpo.config.NetworkConfig`.

Each family is a file of its own, registered once in :data:`proxyhpo.registry.NETWORK_FAMILIES`; a config
names it in ``network.family`` (a trial plan) or ``training.network_family`` (a study), and
:func:`proxyhpo.networks.build_network` builds it. A family declares its proxy: the full network's levels,
first width and blocks per level (:attr:`NetworkFamily.full_size`), and the first width and blocks a proxy of
any number of levels keeps (:attr:`NetworkFamily.proxy_size`); the proxy-network study sweeps the levels
(:meth:`~proxyhpo.config.NetworkConfig.proxy`). It also says whether its networks can be packed
(:attr:`NetworkFamily.packable`).

Family modules import torch and MONAI inside :meth:`NetworkFamily.build` only, so the schema layer reads a
family's sizes without them.
"""

from __future__ import annotations

import abc
import importlib
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from proxyhpo.config.network import NetworkConfig

__all__ = ["NetworkFamily", "build_network", "instantiate"]


class NetworkFamily(abc.ABC):
    """Builds the networks of one family.

    A network maps ``(B, in_channels, D, H, W)`` images to ``(B, out_channels, D, H, W)`` logits (in training
    mode a deep-supervised one returns ``(B, S, out_channels, D, H, W)``, its main output first and its
    ``S - 1`` coarser heads up-sampled, which :func:`~proxyhpo.training.pack.per_model_dice_ce` weights). Its
    output for one patch must not depend on the other patches of a batch (instance or group norm, not batch
    norm). A packable family's networks also keep no buffers, so that a pack trains several as one batched
    model with ``torch.func.vmap``; the others train one model per slot.
    """

    #: the family's name in configs and MLflow params (its registry name)
    name: ClassVar[str]
    #: the full network: (levels, first level's width, blocks per level); the U-Net's by default
    full_size: ClassVar[tuple[int, int, int]] = (5, 16, 2)
    #: a proxy of any number of levels: (first level's width, blocks per level); the paper's 4 channels and 1 unit
    proxy_size: ClassVar[tuple[int, int]] = (4, 1)
    #: whether ``torch.func`` can stack its networks (parameters only, no buffers); else one model per slot
    packable: ClassVar[bool] = True
    #: what every patch side must be a multiple of, whatever the levels (None: ``2 ** (levels - 1)``, a U-Net's)
    patch_multiple: ClassVar[int | None] = None

    @abc.abstractmethod
    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        """The network ``cfg`` describes, with ``in_channels`` image channels and ``out_channels`` classes."""

    def network_def(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> dict[str, Any] | None:
        """The network as a MONAI bundle component, ``{"_target_": "monai.networks.nets.X", **arguments}`` in JSON
        values, which :func:`instantiate` builds; None when the family has none (it is not exported as a bundle)."""
        return None


def instantiate(definition: dict[str, Any]) -> nn.Module:
    """Build a network from its bundle component, as ``monai.bundle`` would: ``_target_`` called with the other keys.

    Example:
        >>> instantiate({"_target_": "torch.nn.Identity"})
        Identity()
    """
    module, _, attribute = definition["_target_"].rpartition(".")
    arguments = {key: value for key, value in definition.items() if key != "_target_"}
    return getattr(importlib.import_module(module), attribute)(**arguments)


def build_network(cfg: NetworkConfig, in_channels: int = 1, out_channels: int = 2) -> nn.Module:
    """Build the network ``cfg`` describes, of the family it names (``cfg.family``).

    Args:
        cfg: the network config.
        in_channels: image channels (1 for CT or single-sequence MR).
        out_channels: classes including background (2: background and the merged foreground).

    Returns:
        a module mapping ``(B, in_channels, D, H, W)`` to ``(B, out_channels, D, H, W)`` logits.

    Raises:
        ValueError: when ``in_channels`` or ``out_channels`` is not positive.

    Example:
        >>> build_network(NetworkConfig.proxy(3))(torch.zeros(1, 1, 16, 16, 16)).shape  # doctest: +SKIP
        torch.Size([1, 2, 16, 16, 16])
    """
    from proxyhpo.registry import NETWORK_FAMILIES

    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if out_channels < 1:
        raise ValueError(f"out_channels must be >= 1, got {out_channels}")
    return NETWORK_FAMILIES[cfg.family]().build(cfg, in_channels, out_channels)
