"""The place of each play in the stable order by a narrow integer code (a bucket's listener codes
span a small range, a batch's bucket numbers a smaller one).

Used by ``toolkit/ordering.py`` to put a log in time order with listeners interleaved into listener
order, and by ``toolkit/buckets.py`` to group a batch of plays by bucket.  A counting sort (one pass
to count each code, one to place each play) is linear in the plays.  It hands back where each play
goes, not which play comes next: the columns are then *scattered* (``out[place] = column``), read in
their own order and written to one running position per code, which stays in cache; gathering
them by the sorted indices instead reads them all over memory.  On 8M plays of 40k listeners in time
order, six columns: 0.15 s scattered against 0.4-1.1 s gathered.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.checks import check_array


def stable_places(codes: np.ndarray, lo: int, span: int) -> np.ndarray:
    """int64 (n,): the position of each of ``codes`` once sorted by code, ties in index order (the
    inverse of the permutation ``np.argsort(codes, kind="stable")``).

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
    return _stable_places(codes, int(lo), int(span))


@njit
def _stable_places(codes, lo, span):
    starts = np.zeros(span + 2, np.int64)  # starts[k + 1] counts code lo + k, then becomes where k begins
    for c in codes:
        starts[c - lo + 1] += 1
    for k in range(span + 1):
        starts[k + 1] += starts[k]
    out = np.empty(len(codes), np.int64)
    for i in range(len(codes)):
        k = codes[i] - lo
        out[i] = starts[k]
        starts[k] += 1
    return out
