"""select.prototypes (D4 steps 2-3) in this process: the per-cluster quotas and ranking
against brute force, the operator over several batches, and D4's documented effect on a
constructed corpus (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from operators.base import Context
from operators.dedup.semantic import SemanticDedup, SemanticParams
from operators.dedup.semantic_math import VectorError, normalise
from operators.filter.length import LengthFilter, LengthParams
from operators.select.prototype_math import kept_per_cluster, prototype_ranks
from operators.select.prototypes import Prototypes, PrototypesParams
from pipelines import columns as C
from pipelines.fitted import FitStore
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import vector_array, write_vectors

DIM = 24


def blobs_with_cores(topics: int = 5, per_topic: int = 120, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `topics` random directions, shuffled: each topic a dense core
    (a third of its rows, tight around the centre: redundant with each other) and a wider
    shell that spans the topic; and the mask of core rows."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((topics, DIM)).astype(np.float32))
    core = np.tile(np.arange(per_topic) % 3 == 0, topics)
    spread = np.where(core, 0.05, 0.35)[:, None]
    x = np.repeat(centres, per_topic, axis=0) + spread * rng.standard_normal((len(core), DIM))
    shuffle = rng.permutation(len(core))
    return normalise(x.astype(np.float32))[shuffle], core[shuffle]


def blobs(topics: int = 5, per_topic: int = 120, seed: int = 0) -> np.ndarray:
    return blobs_with_cores(topics, per_topic, seed)[0]


def run(path: str, store: FitStore | None = None, batch_rows: int = 64,
        metrics: dict | None = None, before: list | None = None, seed: int = 3,
        **params) -> pa.Table:
    """The operator over the file read in batches of `batch_rows`, after `before`."""
    batches = [b for s in discover(path, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, batch_rows)]
    op = Prototypes(PrototypesParams(**{"k": 5, "keep_fraction": 0.7, **params}),
                    Context(seed=seed))
    ops = [*(before or []), op]
    out = run_operators(batches, ops, store=store, metrics=metrics)
    return pa.concat_tables(out).sort_by(C.ORDER)


def decisions(table: pa.Table, step: int = 1) -> dict:
    """What the step decided, per row: reason, detail and signals (no timing)."""
    keep = [C.REASON, C.DETAIL, *[c for c in table.column_names if c.startswith(f"_s{step}:")]]
    return table.select(["id", *keep]).to_pydict()


def dropped(table: pa.Table) -> np.ndarray:
    return np.array([r is not None for r in table[C.REASON].to_pylist()])


# ---- maths ------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.05, 1 / 3, 0.5, 0.7, 0.75, 0.8, 0.999, 1.0])
def test_quotas_keep_the_same_fraction_per_cluster_and_the_exact_total(fraction):
    rng = np.random.default_rng(int(fraction * 1000))
    for _ in range(200):
        sizes = rng.integers(1, rng.choice([3, 40, 2000]), rng.integers(1, 300))
        kept = kept_per_cluster(sizes, fraction)
        quota = sizes * fraction
        assert np.all((kept == np.floor(quota + 1e-9)) | (kept == np.ceil(quota - 1e-9)))
        assert np.all((kept >= 0) & (kept <= sizes))
        assert abs(kept.sum() - fraction * sizes.sum()) <= 0.5 + 1e-9
        # within the paper's +-0.5% of the target whenever there are >= 100 rows
        if sizes.sum() >= 100:
            assert abs(kept.sum() - fraction * sizes.sum()) <= 0.005 * sizes.sum()


def test_quotas_round_each_cluster_alone_would_miss_the_target():
    # 40 clusters of 3 rows at 0.5: each quota is 1.5; rounding alone keeps 40 x 2 = 80
    # (or 40 x 1), largest remainder keeps exactly 60, 20 clusters of 2 and 20 of 1.
    kept = kept_per_cluster(np.full(40, 3), 0.5)
    assert kept.sum() == 60 and sorted(set(kept.tolist())) == [1, 2]
    assert kept[:20].tolist() == [2] * 20  # ties: lower cluster index first
    assert kept_per_cluster(np.array([10, 7]), 1.0).tolist() == [10, 7]
    assert kept_per_cluster(np.array([], np.int64), 0.5).tolist() == []


def test_ranks_equal_a_brute_force_sort_with_ties_by_input_order():
    rng = np.random.default_rng(4)
    cos = np.round(rng.uniform(-1, 1, 500), 2)  # many ties
    order = rng.permutation(10_000)[:500]
    ranks = prototype_ranks(cos, order)
    brute = sorted(range(500), key=lambda i: (-cos[i], order[i]))
    assert [int(ranks[i]) for i in brute] == list(range(1, 501))


# ---- the operator -----------------------------------------------------------------------

def test_removed_rows_are_the_nearest_to_their_centroid_in_every_cluster(tmp_path):
    x = blobs()
    store = FitStore(tmp_path / "fitted")
    metrics: dict = {}
    out = run(write_vectors(tmp_path / "a.parquet", x), store=store, metrics=metrics)
    centroids = store.load(1, "centroids")
    assert centroids.shape == (5, DIM)
    # Brute force in float64: nearest centroid, then the cluster sorted by cosine.
    sims = x.astype(np.float64) @ centroids.astype(np.float64).T
    cluster = sims.argmax(axis=1)
    cos = sims[np.arange(len(x)), cluster]
    assert np.array_equal(np.array(out["_s1:cluster"].to_pylist()), cluster)
    gone = dropped(out)
    sizes = np.bincount(cluster, minlength=5)
    kept = kept_per_cluster(sizes, 0.7)
    for c in range(5):
        members = np.flatnonzero(cluster == c)
        nearest_first = members[np.argsort(-cos[members], kind="stable")]
        n_drop = sizes[c] - kept[c]
        assert gone[nearest_first[:n_drop]].all() and not gone[nearest_first[n_drop:]].any()
        ranks = np.array(out["_s1:cluster_rank"].to_pylist())[nearest_first]
        assert ranks.tolist() == list(range(1, sizes[c] + 1))
    assert gone.sum() == len(x) - round(0.7 * len(x))
    rows = out.to_pylist()
    first = next(r for r in rows if r[C.REASON])
    assert first[C.REASON] == "prototypical"
    assert first[C.DETAIL] == (f"cluster={int(first['_s1:cluster'])} "
                               f"rank={int(first['_s1:cluster_rank'])}/"
                               f"{int(first['_s1:cluster_size'])} "
                               f"cosine={round(first['_s1:centroid_cosine'], 4)}")
    got = metrics[1]
    assert got["k"] == got["k_asked"] == got["clusters"] == 5
    assert got["removed"] == gone.sum() and got["kept"] == len(x) - gone.sum()
    assert got["cluster_size"] == {"min": int(sizes.min()), "max": int(sizes.max()),
                                   "median": float(np.median(sizes))}
    assert got["fit_sample_rows"] == got["input_rows"] == len(x)
    assert not [c for c in out.column_names if C.is_temporary(c)]


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.75, 0.9])
def test_kept_fraction_is_within_half_a_percent_for_many_cluster_counts(tmp_path, fraction):
    x = blobs(topics=8, per_topic=75, seed=9)
    path = write_vectors(tmp_path / "a.parquet", x)
    for k in (1, 7, 30, 120):
        kept = (~dropped(run(path, k=k, keep_fraction=fraction))).sum()
        assert abs(kept - fraction * len(x)) <= 0.5, (k, kept)


def test_deterministic_and_independent_of_batches(tmp_path):
    path = write_vectors(tmp_path / "a.parquet", blobs(seed=2))
    a = decisions(run(path))
    assert a == decisions(run(path)) == decisions(run(path, batch_rows=1000))
    assert a == decisions(run(path, batch_rows=7))
    assert a != decisions(run(path, seed=11))  # another seed draws another k-means


def test_default_k_follows_the_input_rows_and_a_small_sample_reduces_it(tmp_path):
    path = write_vectors(tmp_path / "a.parquet", blobs(topics=3, per_topic=30))
    store, metrics = FitStore(tmp_path / "fitted"), {}
    out = run(path, store=store, metrics=metrics, k=50, sample=20)
    assert store.load(1, "centroids").shape == (20, DIM)
    assert metrics[1]["k"] == 20 and metrics[1]["k_asked"] == 50
    assert metrics[1]["fit_sample_rows"] == 20 and metrics[1]["input_rows"] == 90
    assert (~dropped(out)).sum() == round(0.7 * 90)
    metrics = {}
    run(path, metrics=metrics, k=None)
    assert metrics[1]["k"] == metrics[1]["k_asked"] == 1  # 90 rows / 1000, at least 1


def test_null_vectors_are_kept_and_not_clustered(tmp_path):
    x = blobs(topics=3, per_topic=40)
    mask = pa.array(np.arange(len(x)) % 6 == 0)
    with_nulls = pa.FixedSizeListArray.from_arrays(vector_array(x).values, DIM, mask=mask)
    metrics: dict = {}
    out = run(write_vectors(tmp_path / "a.parquet", with_nulls), metrics=metrics, k=3)
    rows = out.to_pylist()
    nulls = [r for r in rows if int(r["id"][1:]) % 6 == 0]
    assert nulls and all(r[C.REASON] is None and r["_s1:cluster"] is None
                         and r["_s1:cluster_size"] == 0 for r in nulls)
    with_vector = len(rows) - len(nulls)
    assert sum(r[C.REASON] is not None for r in rows) == with_vector - round(0.7 * with_vector)
    assert metrics[1]["unclustered_rows"] == len(nulls)


def test_nan_and_wrong_dimension_are_errors_naming_the_row(tmp_path):
    x = blobs(topics=2, per_topic=30)
    x[17, 3] = np.nan
    with pytest.raises(VectorError, match="row id 'r17'.*NaN"):
        run(write_vectors(tmp_path / "nan.parquet", x))
    lists = [[0.1] * DIM] * 10 + [[0.1] * (DIM - 1)] + [[0.1] * DIM] * 5
    with pytest.raises(VectorError, match="row id 'r10'.*23 values, expected 24"):
        run(write_vectors(tmp_path / "dim.parquet", pa.array(lists, pa.list_(pa.float32()))))
    op = Prototypes(PrototypesParams(), Context())
    rows = pa.table({"id": ["x", "y"], "embedding": vector_array(np.ones((2, 8), np.float32))})
    with pytest.raises(VectorError, match="row id 'x'.*8 values, expected 24"):
        op.assign(rows, np.ones((3, DIM), np.float32))


def test_no_live_rows_keeps_nothing_and_fails_nothing(tmp_path):
    path = write_vectors(tmp_path / "a.parquet", blobs(topics=2, per_topic=20))
    metrics: dict = {}
    everything_short = LengthFilter(LengthParams(min_words=1000), Context())
    out = run(path, metrics=metrics, before=[everything_short])
    assert set(out[C.DROP_STEP].to_pylist()) == {1}
    assert metrics[2]["input_rows"] == 0 and metrics[2]["removed"] == 0


# ---- D4's documented effect -------------------------------------------------------------

def mean_nn_cosine(x: np.ndarray) -> float:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return float(sims.max(axis=1).mean())


def test_kept_set_is_more_diverse_than_a_random_subset(tmp_path):
    # algorithms.md 2.2, verify (2): mean nearest-neighbour cosine of the kept set below
    # that of random subsets of the same size (dense cores pruned first).
    x, core = blobs_with_cores(topics=6, per_topic=150, seed=5)
    out = run(write_vectors(tmp_path / "a.parquet", x), k=6, keep_fraction=0.6)
    gone = dropped(out)
    kept = x[~gone]
    rng = np.random.default_rng(0)
    random = [mean_nn_cosine(x[rng.choice(len(x), len(kept), replace=False)])
              for _ in range(20)]
    assert mean_nn_cosine(kept) < min(random)
    # The 40% removed come from the dense cores first (a third of the rows).
    assert gone[core].mean() > 0.95 and gone[~core].mean() < 0.15


def label_entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_d4_chain_moves_an_over_represented_topic_towards_balance(tmp_path):
    # Four topics of 100 distinct rows, topic 0 padded with 400 near-copies of its own
    # rows (the web's boilerplate): SemDeDup then prototypes (D4) should leave a topic
    # mix of higher entropy than the input, and than random subsets of the same size.
    rng = np.random.default_rng(12)
    centres = normalise(rng.standard_normal((4, DIM)).astype(np.float32))
    topic = np.repeat(np.arange(4), 100)
    distinct = normalise(centres[topic] + 0.35 * rng.standard_normal((400, DIM))
                         .astype(np.float32))
    source = rng.integers(0, 100, 400)
    copies = normalise(distinct[source] + 0.01 * rng.standard_normal((400, DIM))
                       .astype(np.float32))
    x, topic = np.concatenate([distinct, copies]), np.concatenate([topic, np.zeros(400, int)])
    shuffle = rng.permutation(len(x))
    x, topic = x[shuffle], topic[shuffle]
    semantic = SemanticDedup(SemanticParams(eps=0.05, k=4), Context(seed=3))
    out = run(write_vectors(tmp_path / "a.parquet", x), before=[semantic], k=4,
              keep_fraction=0.8)
    kept = np.array([s is None for s in out[C.DROP_STEP].to_pylist()])
    assert (out[C.DROP_STEP].to_numpy(zero_copy_only=False) == 2).sum() > 0  # prototypes ran
    random = [label_entropy(topic[rng.choice(len(x), kept.sum(), replace=False)])
              for _ in range(20)]
    assert label_entropy(topic[kept]) > max(random) > 0
    assert label_entropy(topic[kept]) > label_entropy(topic) + 0.2
    assert np.log(4) - label_entropy(topic[kept]) < 0.05  # close to four equal topics
