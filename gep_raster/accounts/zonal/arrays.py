"""Small numba array helpers of the coverage build and queries: amortised growth, binary search.

Numba's on-disk cache (``cache=True``) keys a compiled function by its own source file only: a
change to a helper here is not seen by the cached callers in the sibling modules
(:mod:`.boundary_scan`, :mod:`.native_engine`, :mod:`.exactextract_engine`, :mod:`.accumulate`)
until their cache is cleared (``make clean`` removes the ``__pycache__`` folders) or their file
changes. The same holds after moving a folder of the package with its ``__pycache__`` (the cached
functions name their old module). A fresh install or clone has no cache.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _grow1(a, n):
    """``a`` (m,) if m >= n, else a copy with at least n elements (amortised doubling)."""
    if n <= a.shape[0]:
        return a
    b = np.empty(max(n, 2 * a.shape[0]), a.dtype)
    b[:a.shape[0]] = a
    return b


@njit(cache=True)
def _grow2(a, n):
    """``a`` (m, k) if m >= n, else a copy with at least n rows (amortised doubling)."""
    if n <= a.shape[0]:
        return a
    b = np.empty((max(n, 2 * a.shape[0]), a.shape[1]), a.dtype)
    b[:a.shape[0]] = a
    return b


@njit(nogil=True, cache=True, inline="always")
def _lower_bound(arr, lo, hi, value):
    """First index in the sorted slice arr[lo:hi] with arr >= value (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(nogil=True, cache=True, inline="always")
def _first_run(reach, lo, hi, c0):
    """First run index in lo:hi whose reach (running max of c1) exceeds c0."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if reach[mid] <= c0:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _concat(arrays: list, empty_shape: tuple, dtype) -> np.ndarray:
    """np.concatenate, without a copy for a single array (the build's peak memory)."""
    if not arrays:
        return np.empty(empty_shape, dtype)
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays)
