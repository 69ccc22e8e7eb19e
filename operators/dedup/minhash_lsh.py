"""Banding and candidate edges of MinHash LSH (docs/algorithms.md 4.1 "Banding", 4.2).

The S-curve P(s) = 1 - (1 - s^r)^b and the choice of (bands, rows) follow Leskovec,
Rajaraman, Ullman, *Mining of Massive Datasets* (MMDS) ch. 3.4; `band_keys` hashes each
band of a signature, and `bucket_edges` turns rows sharing a band key into deduplicated
candidate edges (a < b, sorted) for verification.
"""

from __future__ import annotations

import functools

import numpy as np

from operators.dedup.minhash_hashing import U64, fmix64, gram_mult, splitmix64

# --------------------------------------------------------------------------------------
# Banding (MMDS ch. 3.4; algorithms.md 4.1 "Banding", 4.2)


def candidate_probability(s: np.ndarray | float, bands: int, rows: int) -> np.ndarray:
    """The S-curve P(s) = 1 - (1 - s^r)^b: chance a pair of Jaccard s shares a bucket."""
    return 1.0 - (1.0 - np.asarray(s, float) ** rows) ** bands


def _all_band_shapes(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.concatenate([np.full(num_perm // r, r) for r in range(1, num_perm + 1)])
    b = np.concatenate([np.arange(1, num_perm // r + 1) for r in range(1, num_perm + 1)])
    return b, r


def _areas(threshold: float, b: np.ndarray, r: np.ndarray, grid: int = 2001):
    """FP = integral_0^t P(s) ds and FN = integral_t^1 (1 - P(s)) ds (trapezoid rule)."""
    lo = np.linspace(0.0, threshold, grid)
    hi = np.linspace(threshold, 1.0, grid)
    fp = np.trapezoid(1 - (1 - lo[None, :] ** r[:, None]) ** b[:, None], lo, axis=1)
    fn = np.trapezoid((1 - hi[None, :] ** r[:, None]) ** b[:, None], hi, axis=1)
    return fp, fn


@functools.lru_cache(maxsize=64)  # pure; the operator asks once per batch
def choose_bands(
    threshold: float,
    num_perm: int = 128,
    *,
    min_recall: float = 0.99,
    bands: int | None = None,
    rows: int | None = None,
) -> tuple[int, int]:
    """Pick (b, r), b*r <= num_perm, for candidate generation *below* the threshold.

    Rule (recall first; precision comes from verifying candidates at `threshold`):
    among all (b, r) whose S-curve gives P(threshold) >= min_recall, take the one with the
    smallest false-positive area FP = integral_0^threshold P(s) ds (the expected volume of
    sub-threshold candidates to verify); ties go to fewer bands. If no shape reaches
    min_recall, take the one with the largest P(threshold). For 0.8 / 128 this is
    (b, r) = (16, 6): P(0.8) = 0.992, s* = (1/b)^(1/r) = 0.63.
    Explicit `bands` and/or `rows` override the rule (a missing one is num_perm // other).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    if bands is not None or rows is not None:
        b = bands if bands is not None else num_perm // rows
        r = rows if rows is not None else num_perm // bands
        if b < 1 or r < 1 or b * r > num_perm:
            raise ValueError(f"need bands*rows <= num_perm={num_perm}, got {b}x{r}")
        return int(b), int(r)
    b, r = _all_band_shapes(num_perm)
    p_t = candidate_probability(threshold, b, r)
    ok = p_t >= min_recall
    fp = np.full(b.size, np.inf)
    if ok.any():
        fp[ok] = _areas(threshold, b[ok], r[ok])[0]
    # Lexicographic: smallest FP among shapes meeting min_recall, then fewer bands.
    i = np.lexsort((b, fp)) if ok.any() else np.lexsort((b, -p_t))
    return int(b[i[0]]), int(r[i[0]])


def datasketch_bands(
    threshold: float, num_perm: int = 128, w_fp: float = 0.5, w_fn: float = 0.5
) -> tuple[int, int]:
    """datasketch `_optimal_param`: minimise w_fp*FP + w_fn*FN (algorithms.md 4.1/4.2).
    For reference; its optimum leaves P(threshold) well below 1 (0.40 at 0.8/128)."""
    b, r = _all_band_shapes(num_perm)
    fp, fn = _areas(threshold, b, r)
    i = int(np.argmin(w_fp * fp + w_fn * fn))
    return int(b[i]), int(r[i])


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [n, bands]: a hash of each band's `rows` signature values, band index mixed
    in (so equal keys mean the same band matched). Uses the first bands*rows columns."""
    n, width = sigs.shape
    if bands * rows > width:
        raise ValueError(f"{bands}x{rows} bands need {bands * rows} > {width} signature values")
    v = sigs[:, : bands * rows].reshape(n, bands, rows).astype(U64)
    acc = np.broadcast_to(splitmix64(np.arange(bands) + (1 << 41)), (n, bands)).copy()
    for k, mult in enumerate(gram_mult(rows)):
        acc += v[:, :, k] * mult
    return fmix64(acc)


# --------------------------------------------------------------------------------------
# Candidate edges (algorithms.md 4.1)


def dedupe_edges(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) edges, sorted by (a, b)."""
    if a.size == 0:
        return a, b
    o = np.lexsort((b, a))
    a, b = a[o], b[o]
    keep = np.ones(a.size, bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


CLIQUE_MAX = 16


def bucket_edges(keys: np.ndarray, rows: np.ndarray,
                 clique_max: int = CLIQUE_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Candidate edges from LSH buckets (rows sharing a key), vectorised over all buckets;
    output deduplicated, a < b, sorted by (a, b).

    A bucket of at most `clique_max` rows yields all its pairs; a larger one yields a star
    to its smallest row, so a huge bucket costs linear, not quadratic. Stars alone lose
    true pairs: in a bucket {X, A, B} with J(X, A) >= t > J(X, B) and J(A, B) >= t, the
    star's X-B edge fails verification and A-B is never tried (benchmarks/minhash.md,
    "bucket audit": recall 0.976-0.985 with stars only, 0.998-0.999 with all pairs, for
    15-17% more candidates). Real near-duplicate buckets are small, so the cap keeps the
    all-pairs cost bounded by clique_max x the bucket entries.

    `keys`/`rows` are flat and aligned: for band keys [n, b] pass keys.ravel() and
    np.repeat(rows, b).
    """
    keys = np.asarray(keys).ravel()
    rows = np.asarray(rows, np.int64).ravel()
    o = np.lexsort((rows, keys))
    k, r = keys[o], rows[o]
    n = k.size
    first = np.ones(n, bool)
    first[1:] = k[1:] != k[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    size = np.diff(np.append(np.flatnonzero(first), n))[np.cumsum(first) - 1]
    small = size <= clique_max
    star = ~small & ~first
    a_parts, b_parts = [r[start[star]]], [r[star]]
    # Pairs (i, i + d) inside the same small bucket, for each distance d.
    idx = np.flatnonzero(small)
    end = start[idx] + size[idx]
    for d in range(1, min(clique_max, n)):
        idx, end = idx[idx + d < end], end[idx + d < end]
        if not idx.size:
            break
        a_parts.append(r[idx])
        b_parts.append(r[idx + d])
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    keep = a != b
    return dedupe_edges(a[keep], b[keep])
