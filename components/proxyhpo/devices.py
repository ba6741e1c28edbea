"""The one place a device string (``auto``, ``cpu``, ``cuda``, ``cuda:N``) becomes a ``torch.device``."""

from __future__ import annotations

import torch

from proxyhpo.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device, *, source: str = "device") -> torch.device:
    """Turn ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device`` into a usable device.

    Args:
        device: what the config or the caller asked for.
        source: where the value came from (a config key or an argument), named in the error.

    Raises:
        ConfigError: when the device is unknown, or CUDA is asked for but not available here.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(source, f"{device!r} is not a device", "use auto, cpu, cuda or cuda:N") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(source, f"{device!r} is neither a CPU nor a CUDA device", "use auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(source, f"{str(device)!r} asks for CUDA, but no CUDA GPU is available here", "use device auto or cpu")
    return resolved
