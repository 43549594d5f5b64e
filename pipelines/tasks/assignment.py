"""Minimum-cost assignment (the Hungarian method) in numpy, for the tracker.

The runtime cannot use scipy, so this is a compact O(n^2 m) shortest augmenting path
implementation (the e-maxx formulation of Kuhn-Munkres with potentials).
"""

from __future__ import annotations

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solves the rectangular assignment problem.

    Args:
        cost: (N, M) float matrix; finite values only (use a large number for forbidden pairs).

    Returns:
        rows, cols: int64 arrays of equal length min(N, M), sorted by row, such that
        ``cost[rows, cols].sum()`` is minimal.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost: expected a 2-D matrix, got shape {cost.shape}")
    if not np.all(np.isfinite(cost)):
        raise ValueError("cost: every entry must be finite; use a large value for forbidden pairs")
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    transposed = n > m
    if transposed:
        cost = cost.T
        n, m = m, n
    # 1-based arrays as in the classic formulation; p[j] = row matched to column j.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            used_idx = np.nonzero(used)[0]
            u[p[used_idx]] += delta
            v[used_idx] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    rows, cols = [], []
    for j in range(1, m + 1):
        if p[j] != 0:
            rows.append(p[j] - 1)
            cols.append(j - 1)
    rows_a, cols_a = np.array(rows, np.int64), np.array(cols, np.int64)
    if transposed:
        rows_a, cols_a = cols_a, rows_a
    order = np.argsort(rows_a)
    return rows_a[order], cols_a[order]
