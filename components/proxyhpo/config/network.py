"""The network config of full and proxy U-Nets, and the patch-size rule they impose (torch-free).

:func:`proxyhpo.networks.build_network` turns a :class:`NetworkConfig` into a network of its family; this module
holds only the description, so configs are checked without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SerializerFunctionWrapHandler, model_serializer

from proxyhpo.config.base import StrictModel
from proxyhpo.errors import ConfigError
from proxyhpo.registry import NETWORK_FAMILIES

__all__ = ["NetworkConfig", "check_patch_size"]


class NetworkConfig(StrictModel):
    """A full or proxy network of one family (the paper's residual U-Net by default).

    Every family reads the same three sizes, each in its own terms (see its module): resolution levels,
    the first level's width (doubling per level) and blocks per level. The family declares its full
    network's sizes and its proxy's width and blocks (:class:`proxyhpo.networks.NetworkFamily`); a proxy
    shrinks the levels, which the proxy-network study sweeps.

    Args:
        family: the network family (:data:`proxyhpo.registry.NETWORK_FAMILIES`; ``unet``, the paper's).
        kind: ``"full"`` for the paper's full model, ``"proxy"`` for a shrunken one.
        levels: number of resolution levels (3 to 5); the patch side must be a multiple of
            ``2 ** (levels - 1)``.
        base_channels: channels of the first level; each further level doubles them.
        num_res_units: convolutions inside each level's residual unit (MONAI's meaning).
        patch_size: the training patch ``(D, H, W)`` a family that plans its layers from the data plans
            from (``dynunet``: nnU-Net's kernels and strides); None for the others, or to plan isotropically.
        spacing: the voxel spacing in mm ``(x, y, z)`` it plans from (None: isotropic).

    Example:
        >>> NetworkConfig.proxy(3).channels
        (4, 8, 16)
        >>> NetworkConfig.full().name, NetworkConfig.proxy(4).name
        ('full', 'proxy-L4')
    """

    schema_version: Literal[1] = 1
    family: Annotated[str, AfterValidator(NETWORK_FAMILIES.check)] = "unet"
    kind: Literal["full", "proxy"]
    levels: int = Field(ge=3, le=5)
    base_channels: int = Field(ge=1, le=512)  # doubled per level: 512 is 8,192 channels at the fifth
    num_res_units: int = Field(ge=0, le=16)
    patch_size: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None

    @model_serializer(mode="wrap")
    def _without_unplanned(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a network no data planned dumps as before these keys existed: its trials keep their identity (resume)
        dumped = handler(self)
        return {key: value for key, value in dumped.items() if not (key in ("patch_size", "spacing") and value is None)}

    @classmethod
    def full(cls, family: str = "unet") -> NetworkConfig:
        """The family's full model (:attr:`~proxyhpo.networks.NetworkFamily.full_size`). The U-Net's: the paper's 5 levels
        and "2 residual blocks per level" (MONAI's ``num_res_units=2``); channels 16 to 256 are ours (the paper
        does not state the full model's first width, only that it doubles)."""
        levels, width, blocks = NETWORK_FAMILIES[family].full_size
        return cls(family=family, kind="full", levels=levels, base_channels=width, num_res_units=blocks)

    @classmethod
    def proxy(cls, levels: int = 3, family: str = "unet") -> NetworkConfig:
        """The family's proxy of ``levels`` levels in 3..5 (:attr:`~proxyhpo.networks.NetworkFamily.proxy_size`). The
        U-Net's is the paper's: 4 base channels, 1 residual unit, 5, 4 or 3 levels."""
        width, blocks = NETWORK_FAMILIES[family].proxy_size
        return cls(family=family, kind="proxy", levels=levels, base_channels=width, num_res_units=blocks)

    def for_data(self, patch_size: Sequence[int], spacing: Sequence[float] | None) -> NetworkConfig:
        """This network planned for a recipe's patch and spacing when its family plans its layers from the data
        (``dynunet``); itself otherwise.

        Example:
            >>> NetworkConfig.proxy(3).for_data((32, 32, 32), (3.0, 3.0, 4.0)) == NetworkConfig.proxy(3)
            True
        """
        if not getattr(NETWORK_FAMILIES[self.family], "plans_from_data", False):
            return self
        planned_spacing = tuple(float(v) for v in spacing) if spacing is not None else None
        return self.model_copy(update={"patch_size": tuple(int(v) for v in patch_size), "spacing": planned_spacing})

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of each level, ``base_channels * 2**i``."""
        return tuple(self.base_channels * 2**i for i in range(self.levels))

    @property
    def strides(self) -> tuple[int, ...]:
        """Down-sampling strides between levels (all 2)."""
        return (2,) * (self.levels - 1)

    @property
    def divisor(self) -> int:
        """Every patch side must be a multiple of this: ``2 ** (levels - 1)``."""
        return 2 ** (self.levels - 1)

    @property
    def name(self) -> str:
        """Short label used in results and MLflow params: ``full`` or ``proxy-L3`` (levels), after ``FAMILY:`` for a family other than ``unet``."""
        prefix = "" if self.family == "unet" else f"{self.family}:"
        sizes = self.model_copy(update={"patch_size": None, "spacing": None})  # the plan's data is not part of the name
        if sizes == NetworkConfig.full(self.family):
            return prefix + "full"
        if sizes == NetworkConfig.proxy(self.levels, self.family):
            return f"{prefix}proxy-L{self.levels}"
        return f"{prefix}{self.kind}-L{self.levels}-c{self.base_channels}-r{self.num_res_units}"


def check_patch_size(
    patch_size: Sequence[int], levels: int, *, what: str = "patch_size", path: str = "<config>", family: str = "unet"
) -> None:
    """Check that every side of a patch suits a network of ``family`` with ``levels`` levels.

    Args:
        patch_size: spatial size ``(D, H, W)`` of a training patch or inference window.
        levels: number of network levels.
        what: name of the setting being checked, used in the message.
        path: the file the setting came from, used in the message.
        family: the network family; one with a fixed
            :attr:`~proxyhpo.networks.NetworkFamily.patch_multiple` (SwinUNETR: 32) needs sides of that multiple
            whatever ``levels`` says.

    Raises:
        ConfigError: when a side is not a positive multiple of ``2 ** (levels - 1)`` (or of the family's
            multiple), or when every side equals it (the deepest level would be a single voxel).

    Example:
        >>> check_patch_size((96, 96, 96), 5)
        >>> check_patch_size((96, 96, 40), 5)
        Traceback (most recent call last):
        ...
        proxyhpo.errors.ConfigError: <config>: patch_size (96, 96, 40) does not suit a 5-level U-Net: ...
        >>> check_patch_size((48, 48, 48), 3, family="swinunetr")
        Traceback (most recent call last):
        ...
        proxyhpo.errors.ConfigError: <config>: patch_size (48, 48, 48) does not suit a swinunetr network: ...
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    fixed = NETWORK_FAMILIES[family].patch_multiple
    divisor = fixed or 2 ** (levels - 1)
    network = f"a {family} network" if fixed else f"a {levels}-level U-Net"
    rule = f"{divisor}, what its stages halve every side to" if fixed else f"2^(levels-1) = {divisor}"
    sides = tuple(int(s) for s in patch_size)
    bad = [s for s in sides if s <= 0 or s % divisor]
    if bad:
        raise ConfigError(
            path,
            f"{what} {sides} does not suit {network}: every side must be a positive multiple "
            f"of {rule}, and {', '.join(map(str, bad))} is not",
            f"use sides such as {', '.join(str(divisor * max(1, -(-s // divisor))) for s in sides)}"
            + ("" if fixed else ", or fewer levels"),
        )
    if not fixed and all(s == divisor for s in sides):
        # the deepest level would hold a single voxel, where instance norm has no statistics to take
        raise ConfigError(
            path,
            f"{what} {sides} leaves the deepest level of a {levels}-level U-Net at 1x1x1 voxel, where instance norm is undefined",
            f"use at least one side of {2 * divisor} or more, or fewer levels",
        )
