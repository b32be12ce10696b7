"""The stable order of plays by a narrow integer code (a bucket's listener codes span a small range).

Used by ``toolkit/ordering.py`` to put a log in time order with listeners interleaved into listener
order: a counting sort (one pass to count each code, one to place each play) is linear in the plays
and 3-4x faster than numpy's stable sort of the same codes as 16-bit keys (8M plays, 40k listeners:
0.07 s against 0.28 s).
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.checks import check_array


def stable_order(codes: np.ndarray, lo: int, span: int) -> np.ndarray:
    """int64 (n,): the indices of ``codes`` sorted by code, ties in index order (what
    ``np.argsort(codes, kind="stable")`` returns).

    Parameters
    ----------
    codes : int32 (n,), every value in ``lo .. lo + span``.
    lo, span : the smallest code and the distance to the largest (a count table of ``span + 1``
        entries is allocated, so keep ``span`` to what memory allows).
    """
    codes = check_array("codes", codes, np.int32, 1)
    if span < 0:
        raise ValueError(f"span must be >= 0, got {span}")
    if len(codes) and (int(codes.min()) < lo or int(codes.max()) > lo + span):
        raise ValueError(f"codes must lie in {lo} .. {lo + span}")
    return _stable_order(codes, int(lo), int(span))


@njit
def _stable_order(codes, lo, span):
    starts = np.zeros(span + 2, np.int64)  # starts[k + 1] counts code lo + k, then becomes where k begins
    for c in codes:
        starts[c - lo + 1] += 1
    for k in range(span + 1):
        starts[k + 1] += starts[k]
    out = np.empty(len(codes), np.int64)
    for i in range(len(codes)):
        k = codes[i] - lo
        out[starts[k]] = i
        starts[k] += 1
    return out
