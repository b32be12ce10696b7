"""The one place numba flags live.

Kernels import ``njit`` from here and never pass ``fastmath=`` (or other flags) themselves, so a
single switch changes every kernel.  ``fastmath`` stays off by default: it lets LLVM reorder float
arithmetic, so results could depend on the machine.  Set ``TOOLKIT_FASTMATH=1`` to turn it on for
experiments.
"""

from __future__ import annotations

import functools
import os

import numba

FASTMATH: bool = os.environ.get("TOOLKIT_FASTMATH", "0").strip() == "1"

# cache=True writes compiled kernels to __pycache__ so later processes skip compilation. Numba's
# cache key ignores fastmath (pytensor#1810 had to add it themselves), so a fastmath build would be
# served to, or overwrite, the default one: fastmath builds therefore skip the on-disk cache.
njit = functools.partial(numba.njit, cache=not FASTMATH, fastmath=FASTMATH)
