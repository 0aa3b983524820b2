"""One boundary for array types: the core computes in torch, callers may pass numpy.

Every public core function accepts a numpy array or a torch tensor and returns the same type
(and, for torch, the same device). Converting here once keeps the maths in one code path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_tensor(values: Any, *, dtype: torch.dtype | None = None, name: str = "input") -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)``; numpy arrays and lists become CPU tensors without copying."""
    if isinstance(values, torch.Tensor):
        tensor = values
        was_numpy = False
    else:
        try:
            array = np.asarray(values)
        except Exception as exc:  # noqa: BLE001 - any failure means "not array-like"
            raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(values).__name__}") from exc
        if array.dtype == object:
            raise TypeError(f"{name} must be numeric, got an object array (ragged lists?)")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        was_numpy = True
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor, was_numpy


def like_input(tensor: torch.Tensor, was_numpy: bool) -> Any:
    """Give back a numpy array when the caller passed numpy, else the tensor itself."""
    return tensor.cpu().numpy() if was_numpy else tensor


def require_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise a ValueError that points at the first non-finite entry."""
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(
            f"{name} contains NaN or infinity (first at index {index}); every completion needs a finite "
            "value for every objective - check the reward functions (None becomes NaN)"
        )
