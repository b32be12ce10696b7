"""Which torch device a command computes on: the one choice training, scoring and recommending share."""

from __future__ import annotations

import torch

from toolkit.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (refused when no GPU is visible) or ``auto`` (CUDA when there is one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
