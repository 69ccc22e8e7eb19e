"""Hierarchical k-means with resampling steps (Vo et al. 2024, arXiv 2405.15613, the
method's hierarchical k-means and resampling-clustering; algorithms.md section 2.3), over
numpy and faiss only.

Level 1 is k-means on the points; each level then runs `resampling_steps` rounds of
resampling-k-means: take the `resample_size` points closest to each centroid, re-run
k-means on the pooled points, keep the new centroids [algorithms.md 2.3
"Resampling-k-means"]. Level l > 1 is the same on level l-1's centroids [algorithms.md
2.3 "Level l > 1"]. Pooling an equal number of points per cluster is what pulls the
centroids away from the dense regions towards a uniform cover of the support.

Deviation from the reference code (ssl-data-curation: L2 k-means, k-means++ init, float64
accumulators, on GPUs): k-means here is faiss' spherical k-means (cosine on unit vectors,
float32) as in `dedup.semantic`, because text embeddings are compared by cosine and
faiss runs well on CPUs. The k-means++ init is kept (written here, faiss has none): with
faiss' random init a small, far-away concept seldom gets a centroid, and resampling
cannot move one there. Every run's seed derives from the run's seed: the fit is
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from operators.dedup.semantic_math import fit_centroids, nearest_centroid

LEVELS_DEFAULT = 2  # algorithms.md section 7: hkmeans_balance uses 2 levels
MIN_SAMPLE_PER_CLUSTER = 10  # default K1 leaves each cluster ~10 sample points (resample 5)


@dataclass(frozen=True)
class Hierarchy:
    """The fitted value: unit centroids of every level (level 1 first) and, for level l,
    the level-(l+1) cluster each of its centroids belongs to (`parents[l-1]`), so a row's
    path is its level-1 cluster's chain of parents. `k_requested` and `sample_rows` are
    kept for the step's figures (a K larger than the points it clusters is reduced)."""

    centroids: tuple[np.ndarray, ...]
    parents: tuple[np.ndarray, ...]
    k_requested: tuple[int, ...]
    resampling_steps: tuple[int, ...]
    resample_size: tuple[int, ...]
    sample_rows: int

    @property
    def levels(self) -> int:
        return len(self.centroids)

    @property
    def k(self) -> list[int]:
        return [len(c) for c in self.centroids]

    @property
    def dim(self) -> int | None:
        return self.centroids[0].shape[1] if self.centroids and len(self.centroids[0]) else None

    def paths(self, leaf: np.ndarray) -> np.ndarray:
        """(n, levels) int64 cluster of each row at every level, from its level-1 cluster
        (-1: no cluster, stays -1 at every level)."""
        out = np.full((len(leaf), self.levels), -1, np.int64)
        if self.levels == 0:
            return out
        out[:, 0] = leaf
        for level, parent in enumerate(self.parents, start=1):
            below = out[:, level - 1]
            has = below >= 0
            out[has, level] = parent[below[has]]
        return out


def default_levels(population: int, sample: int) -> list[int]:
    """K per level by corpus size, algorithms.md section 7: [2·√N, √N/5] for N rows.
    K1 is capped so each cluster gets about `MIN_SAMPLE_PER_CLUSTER` sample points
    (the fit sees at most `sample` rows); each level keeps at most its parent's K."""
    root = np.sqrt(max(population, 1))
    k1 = max(1, min(round(2 * root), sample // MIN_SAMPLE_PER_CLUSTER))
    return [k1, max(1, min(round(root / 5), k1))]


def per_level(value: int | Sequence[int] | None, levels: int) -> list[int | None]:
    """A per-level param given as one value for every level, or a list of one per level."""
    if value is None or isinstance(value, int):
        return [value] * levels
    if len(value) != levels:
        raise ValueError(f"{len(value)} values for {levels} levels")
    return list(value)


def closest_per_cluster(cluster: np.ndarray, cos: np.ndarray, size: int) -> np.ndarray:
    """Indices (ascending) of the `size` points of highest cosine to their centroid in
    each cluster (all of a smaller cluster); ties by index. The "closest" strategy of
    the resampling step and of the leaf selection [algorithms.md 2.3;
    ssl-data-curation `hierarchical_kmeans_gpu.py`, `hierarchical_sampling.py`]."""
    index = np.arange(len(cluster))
    order = np.lexsort((index, -cos, cluster))
    sorted_cluster = cluster[order]
    first = np.searchsorted(sorted_cluster, sorted_cluster, side="left")
    rank = np.arange(len(order)) - first
    return np.sort(order[rank < size])


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds (Arthur and Vassilvitskii 2007), as the reference code initialises:
    each next seed drawn with probability proportional to its squared distance to the
    nearest seed so far (2 - 2·cos for unit vectors)."""
    n = len(x)
    chosen = [int(rng.integers(n))]
    d2 = np.maximum(2.0 - 2.0 * (x @ x[chosen[0]]), 0.0).astype(np.float64)
    for _ in range(1, k):
        total = d2.sum()
        # Only copies of the seeds are left: any point will do.
        nxt = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        chosen.append(nxt)
        d2 = np.minimum(d2, np.maximum(2.0 - 2.0 * (x @ x[nxt]), 0.0))
    return x[chosen]


def spherical_kmeans(x: np.ndarray, k: int, niter: int, seed: int) -> np.ndarray:
    """(k', d) float32 unit centroids, k' = min(k, rows): faiss spherical k-means
    (`semantic_math.fit_centroids`) from k-means++ seeds."""
    rng = np.random.default_rng(seed)
    return fit_centroids(x, k, niter, seed, init=lambda x, k: kmeans_plus_plus(x, k, rng))


def resampled_kmeans(x: np.ndarray, k: int, steps: int, size: int, niter: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One level [algorithms.md 2.3, resampling-k-means]: k-means on `x`, then `steps`
    rounds of k-means on the `size` points closest to each centroid. Returns the unit
    centroids and each point's cluster. As in the reference code, no resampling when
    `size` <= 1 (one point per cluster would only reproduce the centroids)."""
    centroids = spherical_kmeans(x, k, niter, seed)
    if size > 1:
        for step in range(steps):
            cluster, cos = nearest_centroid(x, centroids)
            pooled = x[closest_per_cluster(cluster, cos, size)]
            centroids = spherical_kmeans(pooled, len(centroids), niter, seed + step + 1)
    cluster, _ = nearest_centroid(x, centroids)
    return centroids, cluster


def fit_hierarchy(x: np.ndarray, levels: Sequence[int], steps: Sequence[int],
                  sizes: Sequence[int | None], niter: int, seed: int) -> Hierarchy:
    """Hierarchical k-means on unit vectors `x` [algorithms.md 2.3]: level 1 on `x`,
    level l > 1 on level l-1's centroids, each with its resampling steps. A size of
    None is half the level's mean cluster size (the reference config's rule), at least 1.
    A K above the number of points it clusters is reduced to it."""
    points = x
    centroids: list[np.ndarray] = []
    parents: list[np.ndarray] = []
    used_sizes: list[int] = []
    for level, (k, step_count, size) in enumerate(zip(levels, steps, sizes, strict=True)):
        k_used = min(k, len(points))
        size = size if size is not None else max(1, round(len(points) / max(k_used, 1) / 2))
        # Distinct seeds per level: the same seed would start every level alike.
        c, cluster = resampled_kmeans(points, k_used, step_count, size, niter,
                                      seed + 7919 * level)
        if level:
            parents.append(cluster)
        centroids.append(c)
        used_sizes.append(size)
        points = c
    return Hierarchy(tuple(centroids), tuple(parents), tuple(levels), tuple(steps),
                     tuple(used_sizes), len(x))
