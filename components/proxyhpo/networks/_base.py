"""The network family's protocol: a segmentation network built from a :class:`~proxyhpo.config.NetworkConfig`.

Each family is a file of its own, registered once in :data:`proxyhpo.registry.NETWORK_FAMILIES`; a config
names it in ``network.family`` (a trial plan) or ``training.network_family`` (a study), and
:func:`proxyhpo.networks.build_network` builds it. A family's proxy is the same config shrunk: fewer
levels, fewer base channels, fewer residual units (:meth:`~proxyhpo.config.NetworkConfig.proxy`).
"""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import nn

from proxyhpo.config.network import NetworkConfig

__all__ = ["NetworkFamily", "build_network"]


class NetworkFamily(abc.ABC):
    """Builds the networks of one family.

    A network maps ``(B, in_channels, D, H, W)`` images to ``(B, out_channels, D, H, W)`` logits. It must
    keep no buffers (instance norm, not batch norm) so that a pack trains several as one batched model
    with ``torch.func.vmap``, and its output for one patch must not depend on the other patches of a batch.
    """

    #: the family's name in configs and MLflow params (its registry name)
    name: ClassVar[str]

    @abc.abstractmethod
    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        """The network ``cfg`` describes, with ``in_channels`` image channels and ``out_channels`` classes."""


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
