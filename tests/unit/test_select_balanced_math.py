"""select.balanced's maths without Ray or the engine: the cap and the balanced split
(hand-computed cases and a brute-force reference), the hierarchy's resampling on the
toy rings of algorithms.md 2.3, closest-first selection, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from operators.dedup.semantic_math import nearest_centroid, normalise
from operators.select.balanced_sampling import (
    allocate,
    cap,
    entropy_bits,
    split_target,
    take_from_cluster,
)
from operators.select.hierarchical_kmeans import (
    closest_per_cluster,
    default_levels,
    fit_hierarchy,
)


def test_cap_is_the_largest_x_under_the_target_hand_computed():
    sizes = np.array([10, 2, 5, 1])
    # x=3: 3+2+3+1 = 9 <= 10; x=4: 4+2+4+1 = 11 > 10.
    assert cap(sizes, 10) == 3
    assert cap(sizes, 9) == 3
    assert cap(sizes, 0) == 0
    assert cap(sizes, 18) == 10  # everything fits


def test_split_gives_the_remainder_to_clusters_above_the_cap():
    rng = np.random.default_rng(0)
    got = split_target(np.array([10, 2, 5, 1]), 10, rng)
    # Cap 3 leaves one row, given to cluster 0 or 2 (the only ones above the cap).
    assert got.tolist() in ([4, 2, 3, 1], [3, 2, 4, 1])
    assert split_target(np.array([5, 5, 5]), 9, rng).tolist() == [3, 3, 3]
    assert split_target(np.array([5, 5, 5]), 20, rng).tolist() == [5, 5, 5]
    assert split_target(np.array([5, 5, 5]), 0, rng).tolist() == [0, 0, 0]


def brute_cap(sizes: np.ndarray, target: int) -> int:
    x = 0
    while x < sizes.max() and np.minimum(sizes, x + 1).sum() <= target:
        x += 1
    return x


@pytest.mark.parametrize("seed", range(20))
def test_split_sums_to_the_target_exactly_and_is_capped(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 60, rng.integers(1, 30))
    target = int(rng.integers(0, sizes.sum() + 5))
    got = split_target(sizes, target, np.random.default_rng(seed))
    assert got.sum() == min(target, sizes.sum())
    assert (got <= sizes).all()
    if target < sizes.sum():
        x = brute_cap(sizes, target)
        assert cap(sizes, target) == x
        assert (got >= np.minimum(sizes, x)).all() and (got <= np.minimum(sizes, x + 1)).all()


def test_allocation_recurses_into_subclusters_hand_computed():
    leaf = np.array([10, 10, 1, 1, 30])
    parents = [np.array([0, 0, 1, 1, 1])]  # top 0 holds 20 rows, top 1 holds 32
    got = allocate(leaf, parents, [5, 2], 10, seed=0)
    # Top: cap 5 -> [5, 5]. Top 0's [10, 10] get 5: cap 2 plus one extra row.
    # Top 1's [1, 1, 30] get 5: cap 3 -> [1, 1, 3].
    assert got[2:].tolist() == [1, 1, 3]
    assert sorted(got[:2].tolist()) == [2, 3]
    assert got.sum() == 10


@pytest.mark.parametrize("seed", range(10))
def test_allocation_sums_to_the_target_over_three_levels(seed):
    rng = np.random.default_rng(seed)
    k = [40, 8, 3]
    leaf = rng.integers(0, 200, k[0]) ** 2 // 50  # heavy-tailed cluster sizes
    parents = [rng.integers(0, k[1], k[0]), rng.integers(0, k[2], k[1])]
    target = int(rng.integers(1, leaf.sum()))
    got = allocate(leaf, parents, k, target, seed)
    assert got.sum() == target and (got <= leaf).all()
    assert np.array_equal(got, allocate(leaf, parents, k, target, seed))


def test_take_from_cluster_closest_first_matches_brute_force():
    rng = np.random.default_rng(1)
    order = np.sort(rng.choice(10_000, 300, replace=False))
    cos = np.round(rng.uniform(0.5, 1.0, 300), 2)  # rounded: ties, broken by _order
    for quota in (0, 1, 17, 300):
        want = sorted(sorted(zip(-cos, order, strict=True))[:quota], key=lambda t: t[1])
        got = take_from_cluster(order, cos, quota, "closest", seed=0)
        assert got.tolist() == [o for _, o in want]
    random = take_from_cluster(order, cos, 50, "random", seed=0)
    assert len(set(random.tolist())) == 50 and set(random) <= set(order)
    assert np.array_equal(random, take_from_cluster(order, cos, 50, "random", seed=0))


def test_closest_per_cluster_matches_brute_force():
    rng = np.random.default_rng(2)
    cluster = rng.integers(0, 7, 500)
    cos = np.round(rng.uniform(0, 1, 500), 2)
    want = []
    for c in range(7):
        idx = np.flatnonzero(cluster == c)
        want += sorted(idx.tolist(), key=lambda i: (-cos[i], i))[:9]
    assert closest_per_cluster(cluster, cos, 9).tolist() == sorted(want)


def rings(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """algorithms.md 2.3's toy rings (radii 0.7-1.0, the reference README's centres) as
    unit vectors: each 2-D point (u, v) becomes normalise(u, v, 4), a patch of the
    sphere on which cosine distance follows the plane's distance."""
    rng = np.random.default_rng(seed)
    centres = [(-2.2, 1.0), (0.0, 1.0), (2.2, 1.0), (-1.2, 0.2), (1.2, 0.2)]
    parts = []
    for n, (cu, cv) in zip(sizes, centres, strict=True):
        r, a = rng.uniform(0.7, 1.0, n), rng.uniform(0, 2 * np.pi, n)
        parts.append(np.column_stack([cu + r * np.cos(a), cv + r * np.sin(a), np.full(n, 4.0)]))
    x = normalise(np.concatenate(parts).astype(np.float32))
    return x, np.repeat(np.arange(len(sizes)), sizes)


def sample_rings(x: np.ndarray, steps: int, target: int) -> np.ndarray:
    h = fit_hierarchy(x, [100, 30], [steps, steps], [15, 2], niter=20, seed=1)
    leaf, cos = nearest_centroid(x, h.centroids[0])
    quota = allocate(np.bincount(leaf, minlength=h.k[0]), h.parents, h.k, target, seed=1)
    return np.concatenate([take_from_cluster(np.flatnonzero(leaf == c), cos[leaf == c],
                                             int(quota[c]), "closest", 1)
                           for c in range(h.k[0])])


def test_rings_are_sampled_near_equally_not_proportionally():
    """The spec's check, scaled down 10x: 100 rows from rings of 2000/20/100/50/800
    points. Proportional sampling would take 67 from the 2000-point ring; balanced
    sampling takes about 20 from each (the 20-point ring gives what it has)."""
    sizes = [2000, 20, 100, 50, 800]
    x, ring = rings(sizes)
    picked = sample_rings(x, steps=10, target=100)
    counts = np.bincount(ring[picked], minlength=5)
    assert counts.sum() == 100 and len(np.unique(picked)) == 100
    assert counts[0] <= 35, counts  # proportional: 67
    assert counts.min() >= 8, counts  # proportional: 0 or 1 from the small rings
    assert entropy_bits(counts) > entropy_bits(np.array(sizes)) + 0.8


def test_resampling_moves_centroids_towards_a_uniform_cover():
    """Plain k-means puts centroids where the points are dense; resampling-k-means
    spreads them over the support: fewer level-1 centroids on the dense ring."""
    x, ring = rings([2000, 20, 100, 50, 800])

    def centroids_on_dense_ring(steps: int) -> int:
        h = fit_hierarchy(x, [100], [steps], [15], niter=20, seed=1)
        # Each centroid's ring: the ring of its nearest point.
        return int(np.sum(ring[np.argmax(h.centroids[0] @ x.T, axis=1)] == 0))

    assert centroids_on_dense_ring(10) < centroids_on_dense_ring(0)


def test_fit_is_deterministic_given_the_seed():
    x, _ = rings([300, 20, 50, 40, 100])
    a = fit_hierarchy(x, [20, 5], [3, 3], [None, None], niter=10, seed=4)
    b = fit_hierarchy(x, [20, 5], [3, 3], [None, None], niter=10, seed=4)
    c = fit_hierarchy(x, [20, 5], [3, 3], [None, None], niter=10, seed=5)
    assert all(np.array_equal(p, q) for p, q in zip(a.centroids, b.centroids, strict=True))
    assert np.array_equal(a.parents[0], b.parents[0])
    assert not np.array_equal(a.centroids[0], c.centroids[0])


def test_k_larger_than_the_points_is_reduced_and_paths_follow_parents():
    x, _ = rings([5, 3, 2, 2, 3])
    h = fit_hierarchy(x, [50, 20], [10, 10], [None, None], niter=5, seed=0)
    assert h.k == [15, 15] and h.k_requested == (50, 20)
    leaf = np.array([0, 3, -1])
    paths = h.paths(leaf)
    assert paths[:, 0].tolist() == [0, 3, -1]
    assert paths[:, 1].tolist() == [h.parents[0][0], h.parents[0][3], -1]


def test_default_levels_follow_the_corpus_size_capped_by_the_sample():
    assert default_levels(10_000, 100_000) == [200, 20]
    assert default_levels(1_000_000, 100_000) == [2000, 200]
    assert default_levels(100_000_000, 100_000) == [10_000, 2000]  # K1 <= sample / 10
    assert default_levels(3, 100) == [3, 1]


def test_entropy_bits():
    assert entropy_bits(np.array([5, 5, 5, 5])) == pytest.approx(2.0)
    assert entropy_bits(np.array([9, 0, 0])) == 0.0
    assert entropy_bits(np.array([0, 0])) == 0.0
