"""Unit tests of the MinHash LSH maths (operators/dedup/minhash_{hashing,shingles,signatures,
lsh,verify}.py); no Ray."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from operators.dedup.minhash_hashing import gram_hash, token_hash
from operators.dedup.minhash_lsh import (
    band_keys,
    bucket_edges,
    candidate_probability,
    choose_bands,
    datasketch_bands,
)
from operators.dedup.minhash_shingles import (
    Shingles,
    datasketch_shingles,
    shingle_hashes,
    shingle_strings,
    tokenize,
)
from operators.dedup.minhash_signatures import signatures, text_signatures
from operators.dedup.minhash_verify import (
    choose_keepers,
    connected_components,
    estimated_jaccard,
    exact_jaccard,
    find_near_duplicates,
    verify_edges,
)

SAMPLES = Path("/work/shared/data/samples")
needs_samples = pytest.mark.skipif(not SAMPLES.exists(), reason="sample kit not present")

ODD_TEXTS = [
    "",
    "!!! ... ---",
    "a",
    "Two words",
    "exactly five words right here",
    "Ünïcode wörds ÄÖ ½ ² ③ 中文字 x_y __ 'quoted' — dash… İstanbul ǅ ΣΑΣ ﬁ",
    "🙂 emoji🙂word lone\ud800surrogate tab\tnew\nline",
    "a" * 30 + " " + "b" * 17 + " " + "c" * 8 + " " + "d" * 9 + " end of it",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return pq.read_table(SAMPLES / "corpus", columns=["text"])["text"].to_pylist()


def reference_shingles(text: str, n: int = 5) -> list[int]:
    th = [token_hash(t) for t in tokenize(text)]
    if len(th) < n:
        return [gram_hash(th)] if th else []
    return [gram_hash(th[i : i + n]) for i in range(len(th) - n + 1)]


# ---------------------------------------------------------------- tokenise and shingle


def test_tokenize_is_the_ground_truth_rule():
    for text in ODD_TEXTS:
        assert tokenize(text) == re.findall(r"\w+", text.lower())


@needs_samples
def test_word_shingles_equal_per_token_reference(corpus):
    texts = ODD_TEXTS + corpus[:1500] + ODD_TEXTS
    sh = shingle_hashes(texts, block_chars=1 << 14)  # many blocks
    assert len(sh) == len(texts)
    for i in [*range(len(ODD_TEXTS)), *range(len(ODD_TEXTS), len(texts), 97), len(texts) - 2]:
        assert sh.doc(i).tolist() == reference_shingles(texts[i]), i
    # token counts of the vectorised tokeniser equal re.findall on the whole sample
    per_doc = np.diff(shingle_hashes(corpus, ngram=1).offsets)
    assert per_doc.tolist() == [len(tokenize(t)) for t in corpus]


def test_short_documents_get_one_shingle_of_all_tokens():
    sh = shingle_hashes(["", "one two", "one two three four five six"], ngram=5)
    assert sh.sizes.tolist() == [0, 1, 2]
    th = [token_hash(t) for t in ("one", "two")]
    assert sh.doc(1).tolist() == [gram_hash(th)]


def test_char_shingles_equal_reference():
    texts = ODD_TEXTS + ["The  QUICK, brown fox -- jumps over the lazy dog!"] * 2
    sh = shingle_hashes(texts, ngram=6, unit="char")
    for i, text in enumerate(texts):
        cps = [ord(c) for c in " ".join(tokenize(text))]
        want = [gram_hash(cps[j : j + 6]) for j in range(len(cps) - 5)]
        if len(cps) < 6:
            want = [gram_hash(cps)] if cps else []
        assert sh.doc(i).tolist() == want, i


# ---------------------------------------------------------------- signatures


def test_signatures_equal_datasketch_affine32():
    datasketch = pytest.importorskip("datasketch")
    texts = ODD_TEXTS[2:] + [" ".join(f"w{i % 37} x{i % 11}" for i in range(300))]
    for num_perm, seed in [(128, 1), (128, 7), (64, 42), (256, 2024)]:
        ours = signatures(datasketch_shingles(texts), num_perm, seed)
        for row, text in zip(ours, texts, strict=True):
            m = datasketch.MinHash(num_perm=num_perm, seed=seed)
            m.update_batch([s.encode() for s in shingle_strings(tokenize(text))])
            assert m.hashvalues.dtype == np.uint32
            np.testing.assert_array_equal(row, m.hashvalues)
    # an empty document has datasketch's empty signature
    empty = signatures(Shingles.from_arrays([np.empty(0, np.uint64)]), 16, 1)
    np.testing.assert_array_equal(empty[0], datasketch.MinHash(16, 1).hashvalues)


def test_fast_path_is_datasketch_with_another_shingle_hash():
    """Fast path = datasketch affine32 permutations over the low 32 bits of our hashes."""
    datasketch = pytest.importorskip("datasketch")
    texts = ODD_TEXTS[3:]
    sh = shingle_hashes(texts)
    ours = signatures(sh, 128, 3)
    for i in range(len(texts)):
        m = datasketch.MinHash(num_perm=128, seed=3, hashfunc=lambda v: v & 0xFFFFFFFF)
        m.update_batch(sh.doc(i).tolist())
        np.testing.assert_array_equal(ours[i], m.hashvalues)


def test_text_signatures_equal_unfused_path():
    texts = ODD_TEXTS * 30 + [" ".join(f"t{i % 97}" for i in range(5000))]
    for unit, n in (("word", 5), ("char", 9)):
        want = signatures(shingle_hashes(texts, n, unit), 64, 5)
        got = text_signatures(texts, 64, 5, n, unit, block_chars=300)
        np.testing.assert_array_equal(got, want)


def test_signature_chunking_does_not_change_results():
    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 2**63, rng.integers(0, 400), dtype=np.uint64) for _ in range(60)]
    a = signatures(arrays, 100, 9)
    b = signatures(arrays, 100, 9, chunk_shingles=37, chunk_perms=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint32 and a.shape == (60, 100)


@needs_samples
def test_estimated_jaccard_is_close_to_exact_and_unbiased(corpus):
    sh = shingle_hashes(corpus)
    sigs = signatures(sh, 128, 1)
    # Pairs over the whole range of similarity: loose LSH candidates plus random pairs.
    keys = band_keys(sigs, 32, 4)
    a, b = bucket_edges(keys.ravel(), np.repeat(np.arange(len(corpus)), 32))
    rng = np.random.default_rng(0)
    ra, rb = rng.integers(0, len(corpus), (2, 2000))
    a, b = np.concatenate([a, ra]), np.concatenate([b, rb])
    keep = (a != b) & (sh.sizes[a] > 0) & (sh.sizes[b] > 0)
    a, b = a[keep], b[keep]
    exact = exact_jaccard(sh, a, b)
    est = estimated_jaccard(sigs, a, b)
    assert (exact > 0.5).sum() > 300 and ((exact > 0.1) & (exact < 0.5)).sum() > 300
    err = est - exact
    assert np.abs(err).mean() < 0.05
    assert abs(err.mean()) < 0.005  # unbiased (SE of the mean ~0.001 here)
    # exact_jaccard itself against Python sets
    for i in range(0, len(a), max(1, len(a) // 200)):
        sa, sb = set(sh.doc(a[i]).tolist()), set(sh.doc(b[i]).tolist())
        assert exact[i] == pytest.approx(len(sa & sb) / len(sa | sb))


# ---------------------------------------------------------------- banding


def test_choose_bands_rule():
    assert choose_bands(0.8, 128) == (16, 6)
    for t in (0.5, 0.7, 0.8, 0.9):
        for num_perm in (64, 128, 256):
            b, r = choose_bands(t, num_perm)
            assert b * r <= num_perm
            assert candidate_probability(t, b, r) >= 0.99
    assert choose_bands(0.8, 128, bands=9, rows=13) == (9, 13)
    assert choose_bands(0.8, 128, bands=20) == (20, 6)
    with pytest.raises(ValueError):
        choose_bands(0.8, 128, bands=20, rows=7)


@pytest.mark.parametrize(
    ("num_perm", "t", "b", "r"),
    [(128, 0.5, 25, 5), (128, 0.7, 14, 9), (128, 0.8, 9, 13), (128, 0.9, 5, 25)]
    + [(256, 0.7, 25, 10), (256, 0.8, 17, 15), (250, 0.8, 16, 15)],
)
def test_datasketch_objective_reproduces_reference_table(num_perm, t, b, r):
    """algorithms.md 4.2 (datasketch `_optimal_param`, weights 0.5/0.5)."""
    assert datasketch_bands(t, num_perm) == (b, r)


def test_band_keys_mix_values_and_band_index():
    sigs = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 9, 4, 5, 6], [4, 5, 6, 1, 2, 3]], np.uint32)
    k = band_keys(sigs, 2, 3)
    assert k.shape == (3, 2) and k.dtype == np.uint64
    assert k[0, 1] == k[1, 1] and k[0, 0] != k[1, 0]
    assert k[0, 0] != k[2, 1]  # same values, different band


def test_empirical_s_curve_follows_theory():
    """algorithms.md 4.4 (2): synthetic pairs with controlled Jaccard."""
    rng = np.random.default_rng(12345)
    union, trials = 120, 600
    grid = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    arrays, jac = [], []
    for s in grid:
        shared = round(s * union)
        for _ in range(trials):
            v = rng.integers(0, 2**64 - 1, union, dtype=np.uint64, endpoint=True)
            only = union - shared
            arrays += [
                v[: shared + only // 2],
                np.concatenate([v[:shared], v[shared + only // 2 :]]),
            ]
            jac.append(shared / union)
    sigs = signatures(arrays, 128, 11)
    jac = np.array(jac)
    for b, r in [(16, 6), (9, 13), (25, 5)]:
        keys = band_keys(sigs, b, r)
        hit = (keys[0::2] == keys[1::2]).any(axis=1)
        for s in np.unique(jac):
            p = candidate_probability(s, b, r)
            got = hit[jac == s].mean()
            tol = max(0.03, 4 * np.sqrt(p * (1 - p) / trials))
            assert abs(got - p) <= tol, (b, r, s, got, p)


# ---------------------------------------------------------------- edges and components


def brute_force_components(keys, rows):
    parent: dict[int, int] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    buckets: dict[int, list[int]] = {}
    for k, r in zip(keys.tolist(), rows.tolist(), strict=True):
        buckets.setdefault(k, []).append(r)
    for members in buckets.values():
        for x, y in itertools.combinations(members, 2):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
    nodes = sorted(x for m in buckets.values() if len(set(m)) > 1 for x in m)
    return {x: find(x) for x in nodes}


def brute_force_bucket_edges(keys, rows, clique_max):
    buckets: dict[int, list[int]] = {}
    for k, r in zip(keys.tolist(), rows.tolist(), strict=True):
        buckets.setdefault(k, []).append(r)
    edges = set()
    for members in buckets.values():
        members = sorted(set(members))
        if len(members) <= clique_max:
            edges |= set(itertools.combinations(members, 2))
        else:
            edges |= {(members[0], m) for m in members[1:]}
    return edges


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("clique_max", [1, 3, 16])
def test_bucket_edges_and_components_equal_brute_force(seed, clique_max):
    rng = np.random.default_rng(seed)
    n_rows, bands = 400, 5
    row_keys = rng.choice(10**12, n_rows, replace=False).astype(np.int64) - 5 * 10**11
    # few distinct keys, so buckets of every size from 1 to ~20 occur
    keys = rng.integers(0, 40 + 100 * seed, (n_rows, bands)).astype(np.uint64)
    keys += np.arange(bands, dtype=np.uint64) * np.uint64(10**6)  # band index mixed in
    flat_keys, flat_rows = keys.ravel(), np.repeat(row_keys, bands)
    a, b = bucket_edges(flat_keys, flat_rows, clique_max)
    assert (a < b).all()
    got_edges = set(zip(a.tolist(), b.tolist(), strict=True))
    assert len(got_edges) == len(a)  # deduplicated
    assert got_edges == brute_force_bucket_edges(flat_keys, flat_rows, clique_max)
    # bounded: at most clique_max - 1 edges per bucket entry
    assert len(a) <= flat_keys.size * max(clique_max - 1, 1)
    nodes, comp = connected_components(a, b)
    want = brute_force_components(flat_keys, flat_rows)
    got = dict(zip(nodes.tolist(), comp.tolist(), strict=True))
    want = {k: min(x for x in want if want[x] == v) for k, v in want.items()}
    assert got == want


def test_bucket_pairs_survive_a_dissimilar_smallest_row():
    """A bucket {X, A, B}: X is the smallest row, similar to A but not to B, and A-B is a
    true pair. A star to X would lose A-B; all pairs in the small bucket keep it."""
    base = [f"w{i}" for i in range(200)]
    a_words = base[:]
    x_words = base[:]
    x_words[20:28] = [f"x{i}" for i in range(8)]  # X ~ A, X !~ B
    b_words = base[:]
    b_words[100:107] = [f"b{i}" for i in range(7)]  # A ~ B
    b_words[20:24] = [f"y{i}" for i in range(4)]
    texts = [" ".join(w) for w in (x_words, a_words, b_words)]
    sh = shingle_hashes(texts)
    j = {(i, k): float(exact_jaccard(sh, np.array([i]), np.array([k]))[0])
         for i, k in [(0, 1), (0, 2), (1, 2)]}
    assert j[(0, 1)] >= 0.8 > j[(0, 2)] and j[(1, 2)] >= 0.8
    keys = np.zeros(3, np.uint64)  # one shared bucket
    rows = np.arange(3, dtype=np.int64)
    for cap, want in [(1, set()), (16, {(1, 2), (0, 1)})]:
        a, b = bucket_edges(keys, rows, cap)
        va, vb, _ = verify_edges(a, b, 0.8, shingles=sh, rows=rows)
        assert set(zip(va.tolist(), vb.tolist(), strict=True)) >= want
        assert ((1, 2) in set(zip(va.tolist(), vb.tolist(), strict=True))) == (cap > 1)


def test_components_match_scipy_on_random_graphs():
    csgraph = pytest.importorskip("scipy.sparse.csgraph")
    from scipy.sparse import coo_matrix

    rng = np.random.default_rng(7)
    n = 5000
    for edges in (3000, 6000):
        a, b = rng.integers(0, n, (2, edges))
        path = rng.permutation(n)  # a long path in random label order (deep trees)
        a = np.concatenate([a, path[:-1]])
        b = np.concatenate([b, path[1:]]) if edges == 3000 else np.concatenate([b, path[:-1]])
        nodes, comp = connected_components(a, b)
        assert np.array_equal(nodes, np.unique(np.concatenate([a, b])))
        _, labels = csgraph.connected_components(coo_matrix((np.ones(a.size), (a, b)), (n, n)))
        lab = labels[nodes]
        # same partition, and the id is the smallest member
        for c in np.unique(lab):
            members = nodes[lab == c]
            assert (comp[lab == c] == members.min()).all()


def test_choose_keepers_longest_then_smallest_row():
    rows = np.array([10, 11, 12, 20, 21, 30, 31, 32])
    comp = np.array([10, 10, 10, 20, 20, 30, 30, 30])
    length = np.array([5, 9, 9, 3, 3, 1, 7, 2])
    dropped, kept_by = choose_keepers(rows, comp, length)
    got = dict(zip(dropped.tolist(), kept_by.tolist(), strict=True))
    assert got == {10: 11, 12: 11, 21: 20, 30: 31, 32: 31}


def test_verify_edges_maps_row_keys():
    texts = [
        "alpha beta gamma delta epsilon zeta eta theta",
        "alpha beta gamma delta epsilon zeta eta iota",
        "completely different words in this one here",
    ]
    sh = shingle_hashes(texts, ngram=2)
    rows = np.array([700, 500, 600])
    a, b, j = verify_edges(np.array([500, 500]), np.array([700, 600]), 0.7,
                           shingles=sh, rows=rows)  # fmt: skip
    assert a.tolist() == [500] and b.tolist() == [700]
    assert j[0] == pytest.approx(6 / 8)


# ---------------------------------------------------------------- end to end


def co_clustered_pairs(groups: dict[object, list[str]]) -> set[tuple[str, str]]:
    pairs = set()
    for members in groups.values():
        pairs |= {tuple(sorted(p)) for p in itertools.combinations(members, 2)}
    return pairs


@needs_samples
def test_end_to_end_on_sample_corpus():
    corpus = pq.read_table(SAMPLES / "corpus", columns=["id", "text"])
    ids = corpus["id"].to_pylist()
    rows = np.arange(len(ids), dtype=np.int64) * 3 + 1000  # row keys need not be positions
    dropped, kept_by = find_near_duplicates(corpus["text"].to_pylist(), rows, threshold=0.8)
    groups: dict[int, list[str]] = {}
    for d, k in zip(dropped.tolist(), kept_by.tolist(), strict=True):
        groups.setdefault(k, [ids[(k - 1000) // 3]]).append(ids[(d - 1000) // 3])
    predicted = co_clustered_pairs(groups)

    truth = pq.read_table(SAMPLES / "dedup_clusters.parquet").to_pylist()
    gt: dict[int, list[str]] = {}
    for rec in truth:
        if rec["cluster_size"] > 1:
            gt.setdefault(rec["cluster_id"], []).append(rec["id"])
    expected = co_clustered_pairs(gt)
    tp = len(predicted & expected)
    precision, recall = tp / max(len(predicted), 1), tp / len(expected)
    print(f"pairs: predicted {len(predicted)} truth {len(expected)} "
          f"precision {precision:.4f} recall {recall:.4f} dropped {len(dropped)}")  # fmt: skip
    assert precision >= 0.97 and recall >= 0.97
