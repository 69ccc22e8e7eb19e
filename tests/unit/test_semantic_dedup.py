"""dedup.semantic (SemDeDup) in this process: the maths against a brute-force reference,
and the operator's stages over several batches (no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.base import Context
from operators.dedup.semantic import SemanticDedup, SemanticParams
from operators.dedup.semantic_math import (
    VectorError,
    cluster_duplicates,
    default_k,
    fit_centroids,
    group_centroids,
    group_of,
    nearest_centroid,
    neighbour_tops,
    normalise,
    second_group,
    split_large_clusters,
    vectors_of,
)
from pipelines import columns as C
from pipelines.fitted import FitStore
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import vector_array, write_vectors

DIM, EPS = 32, 0.05


def planted(n_random: int = 300, n_pairs: int = 40, seed: int = 0
            ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Random unit vectors (pairwise cosine far below 1 - EPS in 32 dimensions) plus
    `n_pairs` near-copies (cosine about 0.99) of some of them; the planted index pairs."""
    rng = np.random.default_rng(seed)
    base = normalise(rng.standard_normal((n_random, DIM)).astype(np.float32))
    twins = base[:n_pairs] + 0.02 * rng.standard_normal((n_pairs, DIM)).astype(np.float32)
    x = np.concatenate([base, normalise(twins)])
    return x, [(i, n_random + i) for i in range(n_pairs)]


def run(path: str, store: FitStore | None = None, batch_rows: int = 64,
        metrics: dict | None = None, **params) -> pa.Table:
    """The operator over the file(s) read in batches of `batch_rows` rows, as step 1."""
    batches = [b for s in discover(path, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, batch_rows)]
    op = SemanticDedup(SemanticParams(**{"eps": EPS, "k": 4, **params}), Context(seed=3))
    out = run_operators(batches, [op], store=store, metrics=metrics)
    return pa.concat_tables(out).sort_by(C.ORDER)


def comparable(table: pa.Table) -> dict:
    """The run's rows without the timing column; similarities as a float array."""
    out = table.drop_columns([C.seconds_column(1)]).to_pydict()
    out["_s1:max_similarity"] = np.array(out["_s1:max_similarity"], np.float64)
    return out


def reference(x: np.ndarray, eps: float, margin: float = 0.0) -> np.ndarray:
    """Brute force: M = X Xᵀ plus margin * (1 - c) per pair, c the larger of the two rows'
    best cosine to a third row (clipped to [0, 1]; 1 without one), upper triangle,
    column max > 1 - eps."""
    m = (x.astype(np.float64) @ x.T.astype(np.float64))
    n = len(x)
    if margin:
        c = np.ones((n, n))
        for i in range(n):
            for j in range(n):
                others = np.delete(m[i], [i, j])
                if len(others):
                    c[i, j] = np.clip(others.max(), 0, 1)
        m = m + margin * (1 - np.maximum(c, c.T))
    m[np.tril_indices(n)] = -np.inf
    return m.max(axis=0) > 1 - eps


def test_planted_duplicates_found_and_the_farthest_from_the_centroid_kept(tmp_path):
    x, pairs = planted()
    out = run(write_vectors(tmp_path / "a.parquet", x))
    rows = out.to_pylist()
    reason = [r[C.REASON] for r in rows]
    cos = [r["_s1:centroid_cosine"] for r in rows]
    for a, b in pairs:
        assert (reason[a] is None) != (reason[b] is None), (a, b)  # exactly one kept
        kept, gone = (a, b) if reason[a] is None else (b, a)
        assert reason[gone] == "semantic_duplicate" and rows[gone][C.DETAIL] == f"r{kept}"
        assert rows[gone]["_s1:similar_to"] == f"r{kept}"
        assert rows[gone]["_s1:max_similarity"] > 1 - EPS
        assert cos[kept] <= cos[gone]  # "hard" keep: lower cosine to the centroid
        assert rows[gone]["_s1:cluster"] == rows[kept]["_s1:cluster"]
    assert sum(r is not None for r in reason) == len(pairs)  # no random row dropped
    sizes = {r["_s1:cluster"]: r["_s1:cluster_size"] for r in rows}
    assert sum(sizes.values()) == len(rows) and len(sizes) == 4
    assert not [c for c in out.column_names if C.is_temporary(c)]


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_operator_decisions_equal_a_brute_force_reference_per_cluster(tmp_path, margin):
    # Tight clusters (chains of near-copies) make the rule's subtleties matter. Without
    # the second-cluster pass a cluster is compared alone, as the reference is.
    rng = np.random.default_rng(5)
    centers = normalise(rng.standard_normal((6, DIM)).astype(np.float32))
    x = normalise(centers[rng.integers(0, 6, 240)]
                  + 0.06 * rng.standard_normal((240, DIM)).astype(np.float32))
    out = run(write_vectors(tmp_path / "a.parquet", x), k=6, eps=0.1, margin=margin,
              across_clusters=False)
    cluster = np.array(out["_s1:cluster"].to_pylist())
    cos = np.array(out["_s1:centroid_cosine"].to_pylist())
    dropped = np.array([r is not None for r in out[C.REASON].to_pylist()])
    assert 0 < dropped.sum() < len(x)
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        sort = members[np.lexsort((members, cos[members]))]
        assert np.array_equal(dropped[sort], reference(x[sort], 0.1, margin)), c


@pytest.mark.parametrize("margin", [0.0, 0.25])
@pytest.mark.parametrize("eps", [0.001, 0.01, 0.05, 0.1])
def test_cluster_rule_equals_brute_force_and_does_not_depend_on_blocks(eps, margin):
    rng = np.random.default_rng(1)
    n = 500 if margin == 0 else 150  # the margin's brute force is cubic
    x = normalise(rng.standard_normal((3, DIM)).astype(np.float32)[rng.integers(0, 3, n)]
                  + 0.08 * rng.standard_normal((n, DIM)).astype(np.float32))
    removed, maxsim, arg, keeper = cluster_duplicates(x, eps, margin=margin)
    assert np.array_equal(removed, reference(x, eps, margin))
    for block in (16, 100):
        # BLAS sums a block of another shape in another order: the last bit may differ.
        b_removed, b_maxsim, b_arg, b_keeper = cluster_duplicates(x, eps, block=block,
                                                                  margin=margin)
        assert np.array_equal(b_removed, removed) and np.array_equal(b_arg, arg)
        assert np.array_equal(b_keeper, keeper)
        assert np.allclose(b_maxsim, maxsim, atol=1e-6, equal_nan=True)
    assert np.all(arg[1:] < np.arange(1, len(x))) and arg[0] == -1 and np.isnan(maxsim[0])
    assert not removed[keeper].any() and np.array_equal(keeper[~removed],
                                                        np.flatnonzero(~removed))


def test_chains_remove_both_later_rows():
    # A~B and B~C but A not ~ C: the paper removes B and C (not a greedy pass over survivors).
    a = np.array([1.0, 0.0], np.float32)
    b = normalise(np.array([[1.0, 0.12]], np.float32))[0]
    c = normalise(np.array([[1.0, 0.24]], np.float32))[0]
    removed, _, arg, keeper = cluster_duplicates(np.stack([a, b, c]), eps=0.01)
    assert (a @ c) < 0.99 < min(a @ b, b @ c)
    assert removed.tolist() == [False, True, True]
    assert arg.tolist() == [-1, 0, 1] and keeper.tolist() == [0, 0, 0]


def test_blocked_operator_equals_unblocked(tmp_path):
    x, _ = planted()
    path = write_vectors(tmp_path / "a.parquet", x)
    small, large = comparable(run(path, block=16)), comparable(run(path, block=4096))
    sim = "_s1:max_similarity"
    assert np.allclose(small.pop(sim), large.pop(sim), atol=1e-6, equal_nan=True)
    assert small == large


def test_deterministic_given_the_seed(tmp_path):
    x, _ = planted(seed=2)
    path = write_vectors(tmp_path / "a.parquet", x)
    timing = [C.seconds_column(1)]
    assert run(path).drop_columns(timing).equals(run(path).drop_columns(timing))


def test_k_larger_than_the_sample_is_reduced(tmp_path):
    x, _ = planted(n_random=30, n_pairs=5)
    store = FitStore(tmp_path / "fitted")
    out = run(write_vectors(tmp_path / "a.parquet", x), store=store, k=50, sample=20)
    assert store.load(1, "centroids").shape == (20, DIM)
    assert out.num_rows == 35
    assert default_k(400) == 1 and default_k(100_000) == 100


def test_null_vectors_are_kept_and_not_compared(tmp_path):
    x, _ = planted(n_random=50, n_pairs=5)
    vectors = vector_array(x)
    mask = pa.array(np.arange(len(x)) % 10 == 0)
    with_nulls = pa.FixedSizeListArray.from_arrays(vectors.values, DIM, mask=mask)
    out = run(write_vectors(tmp_path / "a.parquet", with_nulls), k=2)
    nulls = [r for r in out.to_pylist() if int(r["id"][1:]) % 10 == 0]
    assert nulls and all(r[C.REASON] is None and r["_s1:cluster"] is None for r in nulls)


def test_nan_vector_is_an_error_naming_the_row(tmp_path):
    x, _ = planted(n_random=50, n_pairs=0)
    x[17, 3] = np.nan
    with pytest.raises(VectorError, match="row id 'r17'.*NaN"):
        run(write_vectors(tmp_path / "a.parquet", x))


def test_wrong_dimension_is_an_error_naming_the_row(tmp_path):
    # A list<float> column (what a JSONL input gives) can hold vectors of any size.
    lists = [[0.1] * DIM] * 10 + [[0.1] * (DIM - 1)] + [[0.1] * DIM] * 5
    with pytest.raises(VectorError, match="row id 'r10'.*31 values, expected 32"):
        run(write_vectors(tmp_path / "a.parquet", pa.array(lists, pa.list_(pa.float32()))))
    # ... and a batch whose vectors do not match the fitted centroids' size
    op = SemanticDedup(SemanticParams(), Context())
    rows = pa.table({"id": ["x", "y"], "embedding": vector_array(np.ones((2, 8), np.float32))})
    with pytest.raises(VectorError, match="row id 'x'.*8 values, expected 32"):
        op.assign(rows, np.ones((3, DIM), np.float32), np.zeros((0, DIM + 1), np.float32))
    with pytest.raises(VectorError, match="not a list of floats"):
        vectors_of(pa.array(["a"]), ["x"])


def test_step_metrics_count_clusters_pairs_and_removals(tmp_path):
    x, pairs = planted()
    path = write_vectors(tmp_path / "a.parquet", x)
    batches = [b for s in discover(path, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, 64)]
    figures = {}
    for across in (False, True):
        op = SemanticDedup(SemanticParams(eps=EPS, k=4, across_clusters=across),
                           Context(seed=3))
        metrics: dict = {}
        rows = pa.concat_tables(run_operators(batches, [op], metrics=metrics)).to_pylist()
        sizes: dict = {}
        for r in rows:
            sizes[r["_s1:cluster"]] = r["_s1:cluster_size"]
        got = figures[across] = metrics[1]
        assert got["clusters"] == len(sizes) == 4 and got["k"] == 4
        assert got["removed"] == len(pairs)
        assert got["cluster_size"]["max"] == max(sizes.values())
        assert sum(sizes.values()) == len(rows)  # each row counted in its own cluster
    paper = figures[False]
    assert paper["pairs_compared"] == sum(int(n * (n - 1) // 2) for n in sizes.values())
    assert paper["second_group_rows"] == 0 and paper["compared_size"] == paper["cluster_size"]
    both = figures[True]  # every row also visits its second cluster
    assert both["second_group_rows"] == len(rows)
    assert both["compared_size"]["max"] > both["cluster_size"]["max"]
    assert both["pairs_compared"] > 2 * paper["pairs_compared"]


def blobs(sizes: list[int], spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in well-separated blobs of the given sizes, and each row's blob."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((len(sizes), DIM)).astype(np.float32)) * 3
    label = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[label] + spread * rng.standard_normal((len(label), DIM)).astype(np.float32)
    return normalise(x), label


def test_nearest_centroid_equals_brute_force():
    rng = np.random.default_rng(5)
    x = normalise(rng.standard_normal((500, DIM)).astype(np.float32))
    centroids = normalise(rng.standard_normal((7, DIM)).astype(np.float32))
    cluster, cos = nearest_centroid(x, centroids)
    sims = x.astype(np.float64) @ centroids.T.astype(np.float64)
    assert np.array_equal(cluster, sims.argmax(axis=1))
    np.testing.assert_allclose(cos, sims.max(axis=1), atol=1e-6)


def test_faiss_centroids_are_the_normalised_means_of_their_rows():
    """The spherical k-means fixed point, checked by brute force: assign every row to
    its nearest centroid with numpy, and each centroid is its rows' normalised mean."""
    x, _ = blobs([120, 80, 200, 60])
    centroids = fit_centroids(x, 4, 50, seed=1)
    assigned = (x.astype(np.float64) @ centroids.T).argmax(axis=1)
    for c in range(4):
        mean = normalise(x[assigned == c].mean(axis=0, keepdims=True))[0]
        assert float(mean @ centroids[c]) > 0.9999


def test_decisions_do_not_depend_on_how_rows_are_split(tmp_path):
    x, _ = planted(seed=4)
    one = write_vectors(tmp_path / "one.parquet", x)
    (tmp_path / "split").mkdir()
    vectors = vector_array(x)
    for name, (a, b) in {"a": (0, 101), "b": (101, 250), "c": (250, len(x))}.items():
        pq.write_table(pa.table({"id": [f"r{i}" for i in range(a, b)],
                                 "text": [f"text {i}" for i in range(a, b)],
                                 "embedding": vectors.slice(a, b - a)}),
                       tmp_path / "split" / f"{name}.parquet")
    keep = ["id", C.REASON, C.DETAIL, "_s1:cluster", "_s1:similar_to", "_s1:cluster_size"]
    want = run(one, batch_rows=64).select(keep)
    assert run(one, batch_rows=7).select(keep).equals(want)
    assert run(str(tmp_path / "split" / "*.parquet"), batch_rows=33).select(keep).equals(want)


def test_large_clusters_are_split_and_bounded(tmp_path):
    x, _ = blobs([600, 40, 40])  # one dense topic, two small ones
    twins = normalise(x[:30] + 0.005 * np.random.default_rng(1).standard_normal(
        (30, DIM)).astype(np.float32))
    path = write_vectors(tmp_path / "a.parquet", np.concatenate([x, twins]))
    metrics: dict = {}
    out = run(path, k=3, max_cluster_rows=150, sample=1000, metrics=metrics)
    got = metrics[1]
    assert got["k"] == 3 and got["fit_sample_rows"] == got["input_rows"] == len(x) + 30
    assert got["split_clusters"] == 1 and got["split_parts"] >= 4
    # no compared group far above the bound (the split is sized from the sample)
    assert got["cluster_size"]["max"] <= 2 * 150
    assert got["clusters"] == 2 + got["split_parts"]
    # twins that fall in one part are still found; the top-level cluster is the signal
    dropped = [r for r in out.to_pylist() if r[C.REASON] == "semantic_duplicate"]
    assert len(dropped) >= 25
    assert {r["_s1:cluster"] for r in out.to_pylist()[:600]} == {out["_s1:cluster"][0].as_py()}
    # without the split, one group holds the whole topic
    whole: dict = {}
    run(path, k=3, sample=1000, metrics=whole)
    assert whole[1]["cluster_size"]["max"] >= 600 and whole[1]["split_clusters"] == 0


def test_split_groups_equal_brute_force_nearest_sub_centroid():
    x, _ = blobs([300, 50])
    centroids = fit_centroids(x, 2, 30, seed=0)
    splits = split_large_clusters(x, centroids, population=3500, max_rows=1000, niter=30,
                                  seed=0)
    cluster, _ = nearest_centroid(x, centroids)
    group = group_of(x, cluster, splits, len(centroids))
    big = np.bincount(cluster).argmax()
    own = np.flatnonzero(splits[:, 0] == big)
    assert len(own) == 3  # 300/350 of 3500 rows = 3000 estimated -> 3 parts of <= 1000
    rows = np.flatnonzero(cluster == big)
    brute = own[(x[rows].astype(np.float64) @ splits[own, 1:].T).argmax(axis=1)]
    assert np.array_equal(group[rows], 2 + brute)
    small = np.flatnonzero(cluster != big)
    assert np.array_equal(group[small], cluster[small])


def test_a_step_with_no_live_rows_fits_nothing_and_keeps_going():
    op = SemanticDedup(SemanticParams(), Context())
    empty = pa.table({})  # what the engine samples when every row was dropped before
    centroids = op.fit(empty)
    splits = op.split(empty, centroids)
    assert centroids.shape[0] == 0 and splits.shape[0] == 0
    decisions = op.keepers(pa.table({}), pa.table({}))
    assert decisions.num_rows == 0
    assert json.loads(decisions.schema.metadata[b"curate.metrics"])["clusters"] == 0


def test_second_group_equals_brute_force_next_nearest_group():
    rng = np.random.default_rng(4)
    x = normalise(rng.standard_normal((300, DIM)).astype(np.float32))
    centroids = normalise(rng.standard_normal((5, DIM)).astype(np.float32))
    splits = np.column_stack([np.full(2, 3, np.float32),
                              normalise(rng.standard_normal((2, DIM)).astype(np.float32))])
    cluster, _ = nearest_centroid(x, centroids)
    group = group_of(x, cluster, splits, 5)
    second = second_group(x, group, group_centroids(centroids, splits))
    # Groups: clusters 0, 1, 2, 4 and the two parts 5, 6 of cluster 3 (not a group itself).
    real = [0, 1, 2, 4, 5, 6]
    vectors = np.concatenate([centroids, splits[:, 1:]])
    assert set(group) <= set(real)
    for i in range(len(x)):
        others = [g for g in real if g != group[i]]
        assert second[i] == others[int(np.argmax([x[i] @ vectors[g] for g in others]))], i
    assert (second_group(x, group, centroids[:1]) == -1).all()  # one group: no second


def test_copies_either_side_of_a_cluster_boundary_are_found_by_the_across_pass(tmp_path):
    rng = np.random.default_rng(9)
    a, b = normalise(rng.standard_normal((2, DIM)).astype(np.float32))
    blobs = np.concatenate([normalise(c + 0.05 * rng.standard_normal((60, DIM)).astype(
        np.float32)) for c in (a, b)])
    # A copy pair (cosine 0.998) on the bisector of the blobs' centroids, nudged to
    # opposite sides of it.
    c = fit_centroids(blobs, 2, 100, 3)
    mid = normalise((c[0] + c[1])[None, :])[0]
    twins = normalise(np.stack([mid + 0.02 * (c[0] - c[1]), mid - 0.02 * (c[0] - c[1])]))
    x = np.concatenate([blobs, twins])
    path = write_vectors(tmp_path / "a.parquet", x)
    within = run(path, k=2, eps=0.01, across_clusters=False)
    both = run(path, k=2, eps=0.01)
    clusters = within["_s1:cluster"].to_pylist()
    assert clusters[120] != clusters[121]  # the copies sit in different clusters
    assert within[C.REASON].to_pylist()[120:] == [None, None]
    assert sorted(map(str, both[C.REASON].to_pylist()[120:])) == ["None",
                                                                 "semantic_duplicate"]


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_with_two_clusters_both_passes_equal_one_global_comparison(tmp_path, margin):
    # K = 2 and no split: every row's boundary group is {0, 1}, so each group holds every
    # row and the step must remove exactly what the rule removes over all rows ranked by
    # centroid cosine (with a margin, each row's competitor is then over all rows too).
    rng = np.random.default_rng(5)
    centers = normalise(rng.standard_normal((6, DIM)).astype(np.float32))
    x = normalise(centers[rng.integers(0, 6, 240)]
                  + 0.06 * rng.standard_normal((240, DIM)).astype(np.float32))
    out = run(write_vectors(tmp_path / "a.parquet", x), k=2, eps=0.1, margin=margin)
    cos = np.array(out["_s1:centroid_cosine"].to_pylist())
    dropped = np.array([r is not None for r in out[C.REASON].to_pylist()])
    rank = np.lexsort((np.arange(len(x)), cos))
    assert 0 < dropped.sum() < len(x)
    assert np.array_equal(dropped[rank], reference(x[rank], 0.1, margin))
    kept = {f"r{i}" for i in np.flatnonzero(~dropped)}
    assert set(out[C.DETAIL].filter(pa.array(dropped)).to_pylist()) <= kept


def test_assignments_do_not_depend_on_how_many_rows_share_the_call():
    # BLAS bits change with the batch's shape; near ties must still go the same way.
    rng = np.random.default_rng(8)
    centroids = normalise(rng.standard_normal((40, DIM)).astype(np.float32))
    mid = normalise(centroids[:20] + centroids[20:])  # rows on the bisectors: near ties
    x = normalise(np.concatenate([mid, rng.standard_normal((300, DIM)).astype(np.float32)]))
    whole = nearest_centroid(x, centroids)
    group = whole[0]
    second = second_group(x, group, centroids)
    for lo, hi in ((0, 1), (0, 7), (5, 77), (0, len(x))):
        part = nearest_centroid(x[lo:hi], centroids)
        assert np.array_equal(part[0], whole[0][lo:hi])
        assert part[1].tobytes() == whole[1][lo:hi].tobytes()
        assert np.array_equal(second_group(x[lo:hi], group[lo:hi], centroids), second[lo:hi])


def test_neighbour_tops_equal_brute_force_and_do_not_depend_on_blocks():
    rng = np.random.default_rng(11)
    x = normalise(rng.standard_normal((130, DIM)).astype(np.float32))
    m = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(m, -np.inf)
    want = np.argsort(-m, axis=1, kind="stable")[:, :2]
    for block in (16, 1024):
        idx, val = neighbour_tops(x, block)
        assert np.array_equal(idx, want)
        assert np.allclose(val, np.take_along_axis(m, want, axis=1), atol=1e-6)
    one_idx, one_val = neighbour_tops(x[:1])
    assert one_idx.tolist() == [[-1, -1]] and np.isneginf(one_val).all()


def test_the_margin_finds_an_isolated_pair_before_a_pair_among_look_alikes():
    # Two pairs at the same cosine (0.90): one alone among unrelated rows, one inside a
    # family of rows that all sit at about 0.90 to each other (one template's pages).
    rng = np.random.default_rng(12)
    dim = 64
    unrelated = normalise(rng.standard_normal((40, dim)).astype(np.float32))

    def around(centre: np.ndarray, n: int, cos: float) -> np.ndarray:
        noise = normalise(rng.standard_normal((n, dim)).astype(np.float32))
        noise -= (noise @ centre)[:, None] * centre  # orthogonal to the centre
        return normalise(cos * centre + np.sqrt(1 - cos**2) * normalise(noise))

    lone = around(unrelated[0], 2, np.sqrt(0.9))  # the two: cosine ~0.90 to each other
    family = around(unrelated[1], 6, np.sqrt(0.9))
    x = np.concatenate([unrelated[2:], lone, family])
    pair, fam = [len(x) - 8, len(x) - 7], list(range(len(x) - 6, len(x)))
    for margin, lone_found, family_found in ((0.0, False, False), (0.25, True, False)):
        removed, _, arg, _ = cluster_duplicates(x, eps=0.05, margin=margin)
        assert removed[pair].any() == lone_found, margin
        assert removed[fam].any() == family_found, margin
    removed, cos, arg, _ = cluster_duplicates(x, eps=0.05, margin=0.25)
    assert arg[pair[1]] == pair[0] and 0.85 < cos[pair[1]] < 0.95
    assert not removed[: len(unrelated) - 2].any()
