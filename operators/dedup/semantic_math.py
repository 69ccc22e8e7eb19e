"""The maths of SemDeDup (Abbas et al. 2023; algorithms.md section 2.1), over numpy only.

`vectors_of` checks and normalises an Arrow vector column, `fit_centroids` is step 1
(spherical k-means), `nearest_centroid` assigns rows to clusters, and
`cluster_duplicates` is steps 3-4 inside one cluster already sorted by step 2's order,
computed in blocks so memory never holds an n x n matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

BLOCK = 1024  # rows x columns of one similarity block: 4 MB of float32


class VectorError(ValueError):
    """A vector the operator cannot use (wrong size, NaN or infinite value), by row id."""


def vectors_of(column: pa.ChunkedArray | pa.Array, ids: Sequence, dim: int | None = None,
               name: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 unit vectors and a mask of the rows that have one (null: no vector).

    Accepts fixed_size_list or list of floats (a JSONL input cannot declare a fixed
    size). A vector of a size other than `dim` (or than the other rows'), or with a NaN
    or infinite value, raises `VectorError` naming the row's id: such a row has no
    meaningful cosine, and silently keeping or dropping it would hide an upstream bug.
    Zero vectors stay zero (cosine 0 with everything: never a duplicate).
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if n else np.zeros(0, bool)
    if pa.types.is_fixed_size_list(arr.type):
        sizes = np.full(n, arr.type.list_size)
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        sizes = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    else:
        raise VectorError(f"column '{name}' is {arr.type}, not a list of floats")
    sizes = np.where(valid, sizes, -1)
    if dim is not None:
        want = dim
    elif pa.types.is_fixed_size_list(arr.type):
        want = arr.type.list_size
    else:
        want = int(sizes[valid][0]) if valid.any() else 0
    bad = np.flatnonzero(valid & (sizes != want))
    if len(bad):
        i = int(bad[0])
        raise VectorError(f"row id {ids[i]!r}: '{name}' has {int(sizes[i])} values, "
                          f"expected {want} (the fitted centroids' or the first row's size)")
    rows = arr.filter(pa.array(valid)) if not valid.all() else arr
    flat = rows.flatten().to_numpy(zero_copy_only=False) if len(rows) else np.zeros(0)
    out = np.zeros((n, want), np.float32)
    out[valid] = np.asarray(flat, np.float32).reshape(-1, want)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise VectorError(f"row id {ids[i]!r}: '{name}' holds a NaN or infinite value")
    return normalise(out), valid


def table_vectors(rows: pa.Table, column: str, id_column: str, dim: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`vectors_of` a table's `column`, rows named by `id_column` in errors. A table without
    the column (the fit sample of a step whose rows were all dropped before it has no
    columns at all) has no vectors."""
    if column not in rows.column_names:
        return np.zeros((0, dim or 0), np.float32), np.zeros(0, bool)
    return vectors_of(rows[column], rows[id_column].to_pylist(), dim, column)


def size_summary(sizes: np.ndarray) -> dict:
    """min, median and max of cluster sizes (zeros when there is no cluster)."""
    if not len(sizes):
        return {"min": 0, "median": 0.0, "max": 0}
    return {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())}


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, so inner product is cosine (the paper's metric);
    embed's vectors already are, but an input column need not be."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def default_k(n_rows: int) -> int:
    """K ≈ N/1000 for N rows to deduplicate (algorithms.md section 7; NeMo uses 1000
    clusters, the paper 50k for 440M images): clusters of about 1000 rows keep the
    pairwise step near N·1000·d, linear in N."""
    return max(1, round(n_rows / 1000))


def fit_centroids(x: np.ndarray, k: int, niter: int, seed: int,
                  init: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
    """Step 1 [paper section 3; SemDeDup `clustering.py`]: spherical k-means with faiss
    on unit vectors; (k', d) float32 unit centroids with k' = min(k, rows). `init(x, k')`
    gives the starting centroids (default: faiss' random rows)."""
    import faiss  # only the fit needs it

    n, d = x.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((0, d), np.float32)
    x = np.ascontiguousarray(x, np.float32)
    # The sample is already bounded, so let faiss use all of it (its default subsamples
    # to 256 points per centroid) and not warn about few points per centroid.
    km = faiss.Kmeans(d, k, niter=niter, spherical=True, seed=seed, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(n, 1))
    start = None if init is None else np.ascontiguousarray(init(x, k), np.float32)
    km.train(x, init_centroids=start)
    return normalise(np.asarray(km.centroids, np.float32).reshape(k, d))


def split_large_clusters(x: np.ndarray, centroids: np.ndarray, population: int,
                         max_rows: int, niter: int, seed: int) -> np.ndarray:
    """Sub-centroids for the clusters too large to compare in one piece [algorithms.md 2.1:
    memory is bounded by the largest cluster, "split very large clusters"].

    `x` is the fit sample; a cluster's size in the corpus is estimated as its share of
    the sample times `population`. A cluster estimated above `max_rows` gets
    ceil(estimate / max_rows) sub-centroids, a spherical k-means of its sample rows.
    Returns (S, 1 + d) float32: column 0 the parent cluster, the rest a unit sub-centroid;
    S = 0 when no cluster is too large.
    """
    d = centroids.shape[1] if centroids.ndim == 2 else x.shape[1]
    parts = [np.zeros((0, 1 + d), np.float32)]
    if len(x) == 0 or len(centroids) == 0:
        return parts[0]
    cluster, _ = nearest_centroid(x, centroids)
    counts = np.bincount(cluster, minlength=len(centroids))
    estimate = counts * (population / len(x))
    for c in np.flatnonzero(estimate > max_rows):
        members = x[cluster == c]
        pieces = min(int(np.ceil(estimate[c] / max_rows)), len(members))
        if pieces < 2:
            continue
        sub = fit_centroids(members, pieces, niter, seed + int(c) + 1)
        parts.append(np.column_stack([np.full(len(sub), c, np.float32), sub]))
    return np.concatenate(parts).astype(np.float32)


def group_of(x: np.ndarray, cluster: np.ndarray, splits: np.ndarray, k: int) -> np.ndarray:
    """The group each row is compared within: its cluster, or, for a split cluster, k +
    the index (in `splits`) of its nearest sub-centroid among that cluster's."""
    group = cluster.copy()
    if len(splits) == 0:
        return group
    parent = splits[:, 0].astype(np.int64)
    for c in np.unique(parent):
        rows = np.flatnonzero(cluster == c)
        if len(rows) == 0:
            continue
        own = np.flatnonzero(parent == c)
        sub, _ = nearest_centroid(x[rows], splits[own, 1:])
        group[rows] = k + own[sub]
    return group


def group_centroids(centroids: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """(K + S, d) centroids indexed by group number (`group_of`'s numbering): cluster c at
    row c, sub-centroid i at row K + i. The row of a split cluster is zeroed, since no row
    is compared within the whole of it: only its parts are groups."""
    groups = np.concatenate([centroids, splits[:, 1:]]).astype(np.float32)
    groups[np.unique(splits[:, 0].astype(np.int64))] = 0.0
    return groups


def second_group(x: np.ndarray, group: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row's next nearest group after its own (by cosine to `groups`, as numbered by
    `group_centroids`); -1 for a row without a group, or when there is only one group.

    SemDeDup compares rows only inside their cluster [paper section 3.1], so two copies on
    either side of a cluster boundary are never compared: at K = N/1000 that costs a few
    points of recall (benchmarks/semantic.md, `k=20` arms). Copies lie close to each other,
    so they nearly always share one of their two nearest groups (99% of the dev set's
    twin pairs at K = 20, against 86% sharing the nearest): comparing every row within
    both finds them.
    """
    real = np.abs(groups).sum(axis=1) > 0
    if len(x) == 0 or real.sum() < 2:
        return np.full(len(x), -1, np.int64)
    index = np.arange(len(groups))

    def allowed(rows: slice) -> np.ndarray:
        """Any real group but the row's own; a row without a group has none."""
        own = group[rows, None]
        return real[None, :] & (index[None, :] != own) & (own >= 0)

    second, _ = best_by_cosine(x, groups, allowed)
    return second


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cluster (argmax inner product = nearest by cosine) and its cosine."""
    if len(x) == 0 or len(centroids) == 0:
        return np.full(len(x), -1, np.int64), np.zeros(len(x), np.float32)
    return best_by_cosine(x, centroids)


def best_by_cosine(x: np.ndarray, vectors: np.ndarray,
                   allowed: Callable[[slice], np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the vector of largest inner product (first on a tie) and that inner
    product; `allowed(rows)` gives the (rows, vectors) mask of candidates for a slice of
    rows (default: all); rows allowed none get -1.

    BLAS ranks the candidates, but its bits depend on how many rows share the batch, so a
    near tie could go either way on another engine: the top few are recomputed row by row
    (einsum, no BLAS), and the choice and the cosine come from those exact values.
    """
    n = len(x)
    out = np.full(n, -1, np.int64)
    cos = np.zeros(n, np.float32)
    top = min(3, vectors.shape[0])
    for s in range(0, n, BLOCK):
        e = min(s + BLOCK, n)
        sims = x[s:e] @ vectors.T
        mask = (np.ones(sims.shape, bool) if allowed is None
                else allowed(slice(s, e)))
        sims[~mask] = -np.inf
        cand = np.argpartition(-sims, top - 1, axis=1)[:, :top] if top < sims.shape[1] \
            else np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        ok = np.take_along_axis(mask, cand, axis=1)
        exact = np.einsum("ikj,ij->ik", vectors[cand], x[s:e])
        exact[~ok] = -np.inf
        # First on a tie: order candidates by index before taking the max.
        by_index = np.argsort(cand, axis=1, kind="stable")
        cand = np.take_along_axis(cand, by_index, axis=1)
        exact = np.take_along_axis(exact, by_index, axis=1)
        pick = np.argmax(exact, axis=1)
        rows = np.arange(e - s)
        has = ok.any(axis=1)
        out[s:e] = np.where(has, cand[rows, pick], -1)
        cos[s:e] = np.where(has, exact[rows, pick], 0.0)
    return out, cos


def neighbour_tops(x: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `x`, its two most similar other rows: (n, 2) indices (-1: none) and
    their exact cosines (-inf: none), in blocks of `block` x `block` similarities."""
    n = len(x)
    idx = np.full((n, 2), -1, np.int64)
    val = np.full((n, 2), -np.inf, np.float32)

    def merge(rows: slice, cols: np.ndarray, sims: np.ndarray) -> None:
        """Fold a block's two best columns per row into the running top two."""
        r = np.arange(len(sims))
        a1 = sims.argmax(axis=1)
        v1 = sims[r, a1]
        sims = sims.copy()
        sims[r, a1] = -np.inf
        a2 = sims.argmax(axis=1)  # a one-column block: column 0 again, now -inf
        v2 = sims[r, a2]
        cand_val = np.column_stack([val[rows], v1, v2])
        cand_idx = np.column_stack([idx[rows], cols[a1], cols[a2]])
        # Which of two equal rows is named can vary with the blocks; `competitor` only
        # reads the values, which do not.
        top = np.argsort(-cand_val, axis=1, kind="stable")[:, :2]
        val[rows] = np.take_along_axis(cand_val, top, axis=1)
        idx[rows] = np.take_along_axis(cand_idx, top, axis=1)

    # The similarity matrix is symmetric: each block below the diagonal serves its rows
    # and, transposed, its columns.
    for s in range(0, n, block):
        e = min(s + block, n)
        for t in range(0, s + 1, block):
            u = min(t + block, n)
            sims = x[s:e] @ x[t:u].T
            if t == s:
                np.fill_diagonal(sims, -np.inf)
            merge(slice(s, e), np.arange(t, u), sims)
            if t != s:
                merge(slice(t, u), np.arange(s, e), sims.T)
    # Exact values (einsum, no BLAS) of the chosen neighbours, as in `cluster_duplicates`.
    has = idx >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)
    val[has] = np.einsum("ij,ij->i", x[rows[has]], x[idx[has]])
    return idx, val


def competitor(tops: tuple[np.ndarray, np.ndarray], rows: np.ndarray, other: np.ndarray
               ) -> np.ndarray:
    """c_r(o): row r's cosine to its most similar row other than o, for broadcastable
    index arrays `rows` and `other` (-inf when r has no such row)."""
    idx, val = tops
    return np.where(idx[rows, 0] == other, val[rows, 1], val[rows, 0])


def cluster_duplicates(x: np.ndarray, eps: float, block: int = BLOCK, margin: float = 0.0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps 3-4 [paper section 3.1; SemDeDup `semdedup.py`] on one cluster's unit
    vectors, rows already in keep order (step 2), with an optional margin (ours).

    The pair (i, j)'s bar 1 - eps is lowered by margin * (1 - c), c the larger of
    c_i(j) and c_j(i), each row's cosine to its most similar *other* row of the cluster
    (`competitor`), clipped to [0, 1]; a row with no other row gives c = 1 (no
    neighbourhood seen, no relief). A pair that stands out from both rows' other
    neighbours (a copy of one document among unrelated ones) needs less similarity than
    one inside a family of look-alike documents (sibling pages of one template), whose
    bar stays near 1 - eps: margin-based matching [Artetxe & Schwenk 2019, "Margin-based
    parallel corpus mining", section 3.1, the "distance" margin, with the nearest other
    neighbour as the neighbourhood]. margin 0 is the paper's fixed bar.

    For each row j: M_j = max over earlier rows i < j of the score cos(i, j) + margin *
    (1 - c) (the column max of the upper triangle of the score matrix), the first i
    reaching it; j is removed when M_j > 1 - eps, whether or not i itself was removed
    (the paper's rule, not a greedy pass over survivors). Returns
    (removed, cos of j to that i (NaN for row 0), argmax (-1 for row 0), keeper), where
    keeper[j] is the kept row reached by following argmax from j (j itself when kept):
    it exists because the first row is always kept. Blocks of `block` x `block`
    similarities bound memory; scores are recomputed exactly for the chosen pair, so
    decisions do not depend on `block` (only an exact tie between two earlier rows,
    within BLAS's rounding, could pick another argmax).
    """
    n = len(x)
    tops = neighbour_tops(x, block) if margin > 0 and n > 1 else None

    def score(sims: np.ndarray, later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
        if tops is None:
            return sims
        c = np.maximum(competitor(tops, later, earlier), competitor(tops, earlier, later))
        c = np.where(np.isneginf(c), 1.0, np.clip(c, 0.0, 1.0))
        return sims + margin * (1 - c)

    best = np.full(n, -np.inf, np.float32)
    arg = np.full(n, -1, np.int64)
    for s in range(0, n, block):
        e = min(s + block, n)
        for t in range(0, e, block):  # only columns before the block's last row
            u = min(t + block, e)
            later, earlier = np.arange(s, e)[:, None], np.arange(t, u)[None, :]
            sims = score(x[s:e] @ x[t:u].T, later, earlier)
            # i < j only: mask the diagonal and everything after it.
            sims[later <= earlier] = -np.inf
            j_best = np.argmax(sims, axis=1)
            j_val = sims[np.arange(e - s), j_best]
            better = j_val > best[s:e]  # strict: an earlier column block wins ties
            best[s:e] = np.where(better, j_val, best[s:e])
            arg[s:e] = np.where(better, t + j_best, arg[s:e])
    # BLAS rounds differently with the block's shape and the process's thread count (a Ray
    # worker has one, this process two): the chosen pair's cosine is recomputed exactly
    # (einsum, no BLAS), so values and decisions are the same on every engine.
    has = arg >= 0
    cos = np.full(n, np.nan, np.float32)
    cos[has] = np.einsum("ij,ij->i", x[has], x[arg[has]])
    best[has] = score(cos[has], np.flatnonzero(has), arg[has]).astype(np.float32)
    removed = best > np.float32(1.0 - eps)
    keeper = np.where(removed, arg, np.arange(n))
    # Pointer jumping: argmax always points earlier, so this ends at a kept row.
    while True:
        nxt = keeper[keeper]
        if np.array_equal(nxt, keeper):
            break
        keeper = nxt
    return removed, cos, arg, keeper
