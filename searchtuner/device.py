"""Devices are always chosen by the user, and checked before anything runs on them."""

from __future__ import annotations

import torch

from searchtuner.errors import ConfigError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device asked for; ``None`` is the CPU (a GPU is never picked behind the user's back).

    Raises:
        ConfigError: the name is not a device, or CUDA is asked for where there is none.
    """
    if device is None:
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu'")
    return chosen
