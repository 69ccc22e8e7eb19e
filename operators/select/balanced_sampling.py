"""Balanced hierarchical sampling (Vo et al. 2024, arXiv 2405.15613; algorithms.md section
2.3 "Balanced hierarchical sampling"; reference code ssl-data-curation
`hierarchical_sampling.py`), over numpy only.

A target of T rows is split over the top level's clusters by a cap x: every cluster
gives min(x, its size), x the largest integer with Σ min(x, size) <= T, and the
remainder goes, one row each, to clusters above the cap chosen at random (seeded). Each
cluster's share is split the same way over its subclusters, down to level 1, where the
rows closest to the centroid (or random rows) are taken. Small clusters are taken whole,
so the kept set is balanced across concepts. No row is taken twice (the reference code's
`multiplier` > 1, repeating rows, is not offered).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cap(sizes: np.ndarray, target: int) -> int:
    """The largest integer x with Σ min(x, sizes) <= target, by binary search over x
    (max(sizes) when every row fits)."""
    if target < 0:
        raise ValueError(f"target {target} must be >= 0")
    top = int(sizes.max()) if len(sizes) else 0
    if int(sizes.sum()) <= target:
        return top
    lo, hi = 0, top  # invariant: Σ min(lo) <= target < Σ min(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if int(np.minimum(sizes, mid).sum()) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def split_target(sizes: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Rows to take from each cluster: min(cap, size), plus one for `remainder` clusters
    above the cap drawn by `rng`; sums to min(target, Σ sizes), never above a size."""
    sizes = np.asarray(sizes, np.int64)
    if int(sizes.sum()) <= target:
        return sizes.copy()
    x = cap(sizes, target)
    out = np.minimum(sizes, x)
    remainder = target - int(out.sum())
    # Σ min(x + 1, sizes) > target, so more clusters lie above the cap than the remainder.
    above = np.flatnonzero(sizes > x)
    out[rng.choice(above, remainder, replace=False)] += 1
    return out


def level_sizes(leaf_sizes: np.ndarray, parents: Sequence[np.ndarray], k: Sequence[int]
                ) -> list[np.ndarray]:
    """Rows in each cluster at every level (level 1 first; `k` clusters per level): a
    cluster holds its subclusters' rows."""
    sizes = [np.asarray(leaf_sizes, np.int64)]
    for parent, count in zip(parents, k[1:], strict=True):
        sizes.append(np.bincount(parent, weights=sizes[-1], minlength=count).astype(np.int64))
    return sizes


def allocate(leaf_sizes: np.ndarray, parents: Sequence[np.ndarray], k: Sequence[int],
             target: int, seed: int) -> np.ndarray:
    """Rows to take from each level-1 cluster for a target of `target` rows, top level
    first, recursing into subclusters with their share. `parents[l]` maps level l+1's
    clusters to level l+2's; `k` is the clusters per level. Sums to min(target, rows)."""
    sizes = level_sizes(leaf_sizes, parents, k)
    rng = np.random.default_rng(seed)
    quota = split_target(sizes[-1], target, rng)
    for level in range(len(sizes) - 2, -1, -1):
        parent = parents[level]
        below = np.zeros(len(sizes[level]), np.int64)
        # Parents in index order, children in index order: the draws do not depend on
        # anything but the sizes and the seed.
        order = np.argsort(parent, kind="stable")
        bounds = np.searchsorted(parent[order], np.arange(len(quota) + 1))
        for p in np.flatnonzero(quota):
            children = order[bounds[p]:bounds[p + 1]]
            below[children] = split_target(sizes[level][children], int(quota[p]), rng)
        quota = below
    return quota


def entropy_bits(sizes: np.ndarray) -> float:
    """Shannon entropy (bits) of the share of rows per cluster; log2(K) when balanced."""
    sizes = np.asarray(sizes, np.float64)
    total = sizes.sum()
    if total <= 0:
        return 0.0
    p = sizes[sizes > 0] / total
    return float(-(p * np.log2(p)).sum())


def row_keys(order: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each row's `_order` (murmur3's finaliser), to take random
    rows the same way whatever batch or worker holds them."""
    with np.errstate(over="ignore"):
        z = order.astype(np.uint64) ^ np.uint64((seed * 0xC2B2AE3D27D4EB4F) % (1 << 64))
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
        return z ^ (z >> np.uint64(33))


def take_from_cluster(order: np.ndarray, cos: np.ndarray, quota: int, strategy: str,
                      seed: int) -> np.ndarray:
    """The `_order`s of the `quota` rows taken from one level-1 cluster: highest cosine
    to the centroid first ("closest", the reference config's default) or by a seeded
    hash ("random"); ties by `_order`."""
    if strategy == "closest":
        rank = np.lexsort((order, -cos))
    elif strategy == "random":
        rank = np.lexsort((order, row_keys(order, seed)))
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return np.sort(order[rank[:quota]])
