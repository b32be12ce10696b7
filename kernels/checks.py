"""The argument checks every kernel wrapper runs before handing arrays to its ``@njit`` core.

A core takes only arrays of exact dtypes and plain ints; these checks turn a wrong input into a
``TypeError`` / ``ValueError`` that says how to fix it, instead of a numba typing error or a
silent copy.
"""

from __future__ import annotations

import numpy as np


def check_array(name: str, arr: object, dtype: type, ndim: int) -> np.ndarray:
    """Check that ``arr`` is a C-contiguous ``ndim``-D ndarray of exactly ``dtype``."""
    dtype_name = np.dtype(dtype).name
    if not isinstance(arr, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array, got {type(arr).__name__}; "
            f"wrap it with np.asarray({name}, dtype=np.{dtype_name})"
        )
    if arr.dtype != dtype:
        raise TypeError(
            f"{name} must have dtype {dtype_name}, got {arr.dtype}; "
            f"convert it with {name}.astype(np.{dtype_name})"
        )
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    return arr


def check_positive_int(name: str, value: object) -> int:
    """Check that ``value`` is an integer (not a bool) and ``> 0``; return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return int(value)
