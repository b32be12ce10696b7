"""Numba kernels: validating wrappers over pure ``@njit`` cores.

Conventions (``kernels/conventions.py``, the same as ``toolkit/schema.py``): ``PAD = 0``, real
items are ``1..n_items`` (int32), skip flags are int8 (1 = skipped), sequences are left-padded
with ``PAD``.
"""

from kernels.negatives import popularity_cdf, sample_negatives
from kernels.sequences import build_sequences, count_windows

__all__ = ["build_sequences", "count_windows", "popularity_cdf", "sample_negatives"]
