"""Verification, components and keepers of MinHash LSH near-duplicate detection
(docs/algorithms.md section 4), and `find_near_duplicates`, the whole pass on one batch.

No Ray, no Arrow tables: numpy arrays in, numpy arrays out. A near-duplicate pass is

    shingle_hashes -> signatures -> band_keys -> bucket_edges -> verify_edges
    -> connected_components -> choose_keepers

(minhash_shingles, minhash_signatures, minhash_lsh, then this module). "rows" are
caller-chosen int64 keys (the operator uses `_order`). Every tie-break is on them, so
results never depend on batch order or scheduling.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from operators.dedup.minhash_lsh import CLIQUE_MAX, band_keys, bucket_edges, choose_bands
from operators.dedup.minhash_shingles import Shingles, csr_offsets, segment_index, shingle_hashes
from operators.dedup.minhash_signatures import EMPTY, text_signatures

# --------------------------------------------------------------------------------------
# Verification, components, keepers (algorithms.md 4.1 "Optional verification ...
# connected components (union-find) and keep one document per component")


def _positions(rows: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
    if rows is None:
        return np.asarray(keys, np.int64)
    order = np.argsort(rows, kind="stable")
    pos = np.searchsorted(rows, keys, sorter=order)
    return order[pos]


def estimated_jaccard(sigs: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Fraction of equal signature positions (Broder's estimator); 0 if either is empty."""
    out = np.empty(len(ia), float)
    step = max(1, (1 << 22) // max(sigs.shape[1], 1))
    for i in range(0, len(ia), step):
        sa, sb = sigs[ia[i : i + step]], sigs[ib[i : i + step]]
        est = (sa == sb).mean(axis=1)
        empty = (sa == EMPTY).all(axis=1) | (sb == EMPTY).all(axis=1)
        out[i : i + step] = np.where(empty, 0.0, est)
    return out


_PAIR_BITS = 23  # at most 2**23 pairs per chunk of `exact_jaccard`


def _set_keys(sh: Shingles, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The shingle *sets* of `docs`, each hash cut to its top `bits` bits.

    Returns (hashes, offsets, bits): CSR in the order of `docs`, each set sorted and
    de-duplicated. Cutting hashes to `bits` (40 bits for up to 8M candidate rows, one
    fewer per doubling beyond) lets (doc or pair, hash) pack into one int64, so one
    `np.sort` does what a two-key lexsort or a global rank (an argsort: 14 s for the 75M
    shingles of 1M docs) would.
    Two different shingles of a pair then collide with probability about
    |A| |B| / 2**bits (< 1e-7 for 300-shingle documents at 40 bits), against |A| |B| / 2**64 for
    the full hashes: the Jaccard is exact but for that.
    """
    bits = 63 - max(int(len(docs)).bit_length(), _PAIR_BITS)
    sizes = sh.offsets[docs + 1] - sh.offsets[docs]
    cut = (sh.values[segment_index(sh.offsets, docs)] >> np.uint64(64 - bits)).astype(np.int64)
    key = np.repeat(np.arange(len(docs), dtype=np.int64), sizes) << bits | cut
    key.sort()
    key = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    owner = key >> bits
    return key & ((1 << bits) - 1), csr_offsets(np.bincount(owner, minlength=len(docs))), bits


def exact_jaccard(
    sh: Shingles, ia: np.ndarray, ib: np.ndarray, *, max_elements: int = 1 << 23
) -> np.ndarray:
    """Jaccard |A & B| / |A | B| of the shingle-hash *sets* of docs ia[i], ib[i].

    Vectorised: each pair's two sets are packed as (pair, hash) keys (see `_set_keys`),
    sorted together and adjacent equal keys counted; memory is bounded by chunking
    pairs to about `max_elements` values. Two empty sets score 0 (never duplicates).
    """
    ia, ib = np.asarray(ia, np.int64), np.asarray(ib, np.int64)
    out = np.zeros(ia.size, float)
    if ia.size == 0:
        return out
    docs, inv = np.unique(np.concatenate([ia, ib]), return_inverse=True)
    hashes, offsets, bits = _set_keys(sh, docs)
    ua, ub = inv[: ia.size], inv[ia.size :]
    na, nb = np.diff(offsets)[ua], np.diff(offsets)[ub]
    cum = np.cumsum(na + nb)
    lo = 0
    while lo < ia.size:
        base = cum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cum, base + max_elements, "right")))
        hi = min(hi, lo + (1 << _PAIR_BITS) - 1)
        pair = np.arange(hi - lo, dtype=np.int64)
        key = np.concatenate([
            np.repeat(pair, na[lo:hi]) << bits | hashes[segment_index(offsets, ua[lo:hi])],
            np.repeat(pair, nb[lo:hi]) << bits | hashes[segment_index(offsets, ub[lo:hi])],
        ])
        key.sort()
        # A hash occurs at most once per set, so an equal neighbour is a shared shingle.
        shared = key[1:][key[1:] == key[:-1]] >> bits
        inter = np.bincount(shared, minlength=hi - lo)
        union = na[lo:hi] + nb[lo:hi] - inter
        out[lo:hi] = np.divide(inter, union, out=np.zeros(hi - lo), where=union > 0)
        lo = hi
    return out


def verify_edges(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    *,
    shingles: Shingles | None = None,
    sigs: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep candidate edges whose Jaccard >= threshold; returns (a, b, jaccard) kept.

    Exact Jaccard of the shingle-hash sets when `shingles` is given (the default in the
    operator), else the signature estimate. `rows` maps row keys to positions in
    `shingles`/`sigs` (positions are the keys when it is None). Exact verification
    splits the edges into `threads` contiguous parts verified in parallel (1.7x on 2
    threads: numpy's sorts release the GIL).
    """
    ia, ib = _positions(rows, a), _positions(rows, b)
    if shingles is not None:
        parts = np.array_split(np.arange(len(ia)), max(1, min(threads, len(ia) // 1000)))
        with ThreadPoolExecutor(len(parts)) as pool:
            j = np.concatenate(list(pool.map(
                lambda p: exact_jaccard(shingles, ia[p], ib[p]), parts)) or [np.zeros(0)])
    elif sigs is not None:
        j = estimated_jaccard(sigs, ia, ib)
    else:
        raise ValueError("verify_edges needs shingles (exact) or sigs (estimate)")
    keep = j >= threshold
    return np.asarray(a)[keep], np.asarray(b)[keep], j[keep]


def connected_components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Components of the graph on the rows appearing in edges (a, b).

    Returns (rows, component) sorted by row, component = the smallest row key of the
    component. Memory is O(distinct rows in edges), not O(corpus). Vectorised
    union-find: hook every root to the smaller root across each edge, then compress
    paths by pointer jumping; repeat until every edge is inside one tree.
    """
    nodes, inv = np.unique(np.concatenate([a, b]).astype(np.int64), return_inverse=True)
    ea, eb = inv[: len(a)], inv[len(a) :]
    parent = np.arange(nodes.size)
    while True:
        pa_, pb_ = parent[ea], parent[eb]
        diff = pa_ != pb_
        if not diff.any():
            break
        hi, lo = np.maximum(pa_[diff], pb_[diff]), np.minimum(pa_[diff], pb_[diff])
        np.minimum.at(parent, hi, lo)  # roots only hook to smaller roots: no cycles
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        ea, eb = ea[diff], eb[diff]
    # Every child has a larger index than its parent, so a root is its tree's minimum.
    return nodes, nodes[parent]


def choose_keepers(
    rows: np.ndarray, component: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One keeper per component: the longest text (character count), ties -> smallest row.

    Returns (dropped, kept_by): each non-kept row and its component's keeper row.
    """
    rows, component = np.asarray(rows, np.int64), np.asarray(component, np.int64)
    o = np.lexsort((rows, -np.asarray(length, np.int64), component))
    r, c = rows[o], component[o]
    first = np.ones(r.size, bool)
    first[1:] = c[1:] != c[:-1]
    keeper = r[np.maximum.accumulate(np.where(first, np.arange(r.size), 0))]
    return r[~first], keeper[~first]


# --------------------------------------------------------------------------------------
# Composition for one in-memory batch


def find_near_duplicates(
    texts: Sequence[str],
    rows: np.ndarray | None = None,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    seed: int = 1,
    ngram: int = 5,
    unit: Literal["word", "char"] = "word",
    bands: int | None = None,
    band_rows: int | None = None,
    verify: Literal["exact", "estimate", "none"] = "exact",
    clique_max: int = CLIQUE_MAX,
) -> tuple[np.ndarray, np.ndarray]:
    """All steps on one batch; returns (dropped rows, their keeper rows).

    verify: "exact" keeps candidate edges with exact shingle-set Jaccard >= threshold,
    "estimate" uses the signature estimate instead, "none" keeps every LSH candidate.
    """
    rows = np.arange(len(texts), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    sigs = text_signatures(texts, num_perm, seed, ngram, unit)
    b, r = choose_bands(threshold, num_perm, bands=bands, rows=band_rows)
    keys = band_keys(sigs, b, r)
    a, c = bucket_edges(keys.ravel(), np.repeat(rows, b), clique_max)
    if verify == "exact":  # shingle sets are rebuilt for the candidates only
        cand = np.unique(_positions(rows, np.concatenate([a, c])))
        sh = shingle_hashes([texts[i] for i in cand.tolist()], ngram, unit)
        a, c, _ = verify_edges(a, c, threshold, shingles=sh, rows=rows[cand])
    elif verify == "estimate":
        a, c, _ = verify_edges(a, c, threshold, sigs=sigs, rows=rows)
    nodes, comp = connected_components(a, c)
    length = np.fromiter(map(len, texts), np.int64, len(texts))[_positions(rows, nodes)]
    return choose_keepers(nodes, comp, length)
