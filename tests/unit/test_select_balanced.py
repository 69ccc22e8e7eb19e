"""select.balanced in this process (no Ray): an over-represented topic down-sampled towards
balance (cluster-size entropy of the kept set above the input's and a random subset's),
exact targets, batch independence, determinism, bad vectors, K reduced, params."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from operators.base import Context
from operators.dedup.semantic_math import VectorError, normalise
from operators.select.balanced import BalancedParams, BalancedSelection
from operators.select.balanced_sampling import entropy_bits
from pipelines import columns as C
from pipelines.fitted import FitStore
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import vector_array, write_vectors

DIM = 16
TOPICS = [1500, 100, 100, 100, 100, 100]  # topic 0 fills 75% of the corpus


def topics(sizes: list[int] = TOPICS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one random direction per topic; each row's topic."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((len(sizes), DIM)).astype(np.float32))
    x = np.concatenate([normalise(c + 0.08 * rng.standard_normal((n, DIM)).astype(np.float32))
                        for c, n in zip(centres, sizes, strict=True)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


def run(path: str, batch_rows: int = 256, seed: int = 3, metrics: dict | None = None,
        store: FitStore | None = None, **params) -> pa.Table:
    """The operator over the file read in batches of `batch_rows` rows, as step 1."""
    batches = [b for s in discover(path, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, batch_rows)]
    params = {"target_size": 300, "levels": [30, 6], "niter": 20, **params}
    op = BalancedSelection(BalancedParams(**params), Context(seed=seed))
    out = run_operators(batches, [op], metrics=metrics, store=store)
    return pa.concat_tables(out).sort_by(C.ORDER)


def kept(out: pa.Table) -> np.ndarray:
    return pc.is_null(out[C.DROP_STEP]).to_numpy(zero_copy_only=False)


def test_an_over_represented_topic_is_down_sampled_towards_balance(tmp_path):
    x, topic = topics()
    metrics: dict = {}
    out = run(write_vectors(tmp_path / "a.parquet", x), metrics=metrics)
    keep = kept(out)
    assert keep.sum() == 300
    per_topic = np.bincount(topic[keep], minlength=len(TOPICS))
    # Proportional would be 225 from topic 0 and 15 from each other; balanced is 50 each
    # (k-means need not find the topics exactly, so some miss 50 both ways).
    assert per_topic[0] <= 75 and per_topic.min() > 15, per_topic
    assert entropy_bits(per_topic) > entropy_bits(np.array(TOPICS)) + 0.8

    leaf = np.array(out[C.signal_column(1, "cluster_l1")].to_pylist(), np.int64)
    sizes = np.bincount(leaf, minlength=30)
    random = np.random.default_rng(0).choice(len(leaf), 300, replace=False)
    h_input = entropy_bits(sizes)
    h_kept = entropy_bits(np.bincount(leaf[keep], minlength=30))
    h_random = entropy_bits(np.bincount(leaf[random], minlength=30))
    assert h_kept > h_input + 0.5 and h_kept > h_random + 0.5, (h_input, h_kept, h_random)
    # The step's figures say the same, at the leaf and the top level.
    m = metrics[1]
    assert m["entropy_bits"]["leaf"]["input"] == pytest.approx(h_input)
    assert m["entropy_bits"]["leaf"]["kept"] == pytest.approx(h_kept)
    assert m["entropy_bits"]["top"]["kept"] > m["entropy_bits"]["top"]["input"]
    assert m["k"] == [30, 6] and m["target"] == m["selected"] == 300
    assert m["sample_rows"] == 2000 and m["rows_with_vector"] == 2000

    dropped = out.filter(pc.invert(pa.array(keep)))
    assert set(dropped[C.REASON].to_pylist()) == {"balanced_out"}
    details = dropped[C.DETAIL].to_pylist()
    assert details[0] == f"cluster_l1={leaf[~keep][0]}"


def test_rows_kept_are_the_closest_to_their_centroid_within_each_leaf(tmp_path):
    x, _ = topics()
    out = run(write_vectors(tmp_path / "a.parquet", x))
    keep = kept(out)
    leaf = np.array(out[C.signal_column(1, "cluster_l1")].to_pylist(), np.int64)
    cos = np.array(out[C.signal_column(1, "centroid_cosine")].to_pylist())
    for c in np.unique(leaf):
        rows = leaf == c
        if keep[rows].any() and not keep[rows].all():
            assert cos[rows & keep].min() >= cos[rows & ~keep].max()


def test_target_fraction_and_random_strategy_keep_exact_counts(tmp_path):
    x, _ = topics()
    path = write_vectors(tmp_path / "a.parquet", x)
    assert kept(run(path, target_size=None, target_fraction=0.1)).sum() == 200
    a = run(path, strategy="random", target_size=123)
    assert kept(a).sum() == 123
    assert np.array_equal(kept(a), kept(run(path, strategy="random", target_size=123)))
    assert kept(run(path, target_size=5000)).all()  # a target above the corpus keeps all


def test_result_does_not_depend_on_batches_and_is_deterministic_given_the_seed(tmp_path):
    x, _ = topics()
    path = write_vectors(tmp_path / "a.parquet", x)
    a, b = run(path, batch_rows=64), run(path, batch_rows=2000)
    drop = [C.seconds_column(1)]
    assert a.drop_columns(drop).equals(b.drop_columns(drop))
    other = run(path, seed=4)
    signal = C.signal_column(1, "cluster_l1")
    assert not other[signal].equals(a[signal])  # another seed: another sample and fit


def test_fitted_hierarchy_is_recorded_and_reused(tmp_path):
    x, _ = topics()
    path = write_vectors(tmp_path / "a.parquet", x)
    store = FitStore(tmp_path / "fitted")
    first = run(path, store=store)
    assert (tmp_path / "fitted").is_dir() and any((tmp_path / "fitted").iterdir())
    again = run(path, store=store, seed=9)  # the recorded fit wins over a new seed's
    signal = C.signal_column(1, "cluster_l1")
    assert first[signal].equals(again[signal])


def test_wrong_size_and_nan_vectors_name_the_row(tmp_path):
    x, _ = topics([30, 30])
    rows = [v.tolist() for v in x]
    rows[7] = rows[7][:5]
    with pytest.raises(VectorError, match="row id 'r7'.*has 5 values, expected 16"):
        run(write_vectors(tmp_path / "a.parquet", pa.array(rows, pa.list_(pa.float32()))),
            target_size=10, levels=[4, 2])
    rows = [v.tolist() for v in x]
    rows[12][3] = float("nan")
    with pytest.raises(VectorError, match="row id 'r12'.*NaN"):
        run(write_vectors(tmp_path / "b.parquet", pa.array(rows, pa.list_(pa.float32()))),
            target_size=10, levels=[4, 2])


def test_rows_without_a_vector_are_dropped_with_their_own_reason(tmp_path):
    x, _ = topics([40, 40])
    vectors = vector_array(x)
    mask = np.zeros(len(x), bool)
    mask[[3, 50]] = True
    with_nulls = pa.FixedSizeListArray.from_arrays(vectors.values, DIM, mask=pa.array(mask))
    out = run(write_vectors(tmp_path / "a.parquet", with_nulls), target_size=20, levels=[6, 2])
    assert kept(out).sum() == 20
    nulls = out.filter(pa.array(mask))
    assert nulls[C.REASON].to_pylist() == ["no_embedding"] * 2
    assert nulls[C.DETAIL].to_pylist() == ["'embedding' is null"] * 2
    assert nulls[C.signal_column(1, "cluster_l1")].null_count == 2


def test_a_corpus_smaller_than_k_reduces_k_and_records_it(tmp_path):
    x, _ = topics([12, 8])
    metrics: dict = {}
    out = run(write_vectors(tmp_path / "a.parquet", x), metrics=metrics, target_size=10,
              levels=[50, 10])
    assert kept(out).sum() == 10
    assert metrics[1]["k"] == [20, 10] and metrics[1]["k_requested"] == [50, 10]


def test_default_levels_follow_the_corpus_size(tmp_path):
    x, _ = topics([300, 100])
    metrics: dict = {}
    run(write_vectors(tmp_path / "a.parquet", x), metrics=metrics, levels=None, target_size=50)
    assert metrics[1]["k"] == [40, 4]  # round(2·√400), round(√400 / 5)


@pytest.mark.parametrize("params, message", [
    ({"target_size": 5, "target_fraction": 0.5}, "exactly one of target_size"),
    ({}, "exactly one of target_size"),
    ({"target_size": 5, "levels": [10, 20]}, "at most as many clusters"),
    ({"target_size": 5, "levels": [10, 0]}, "at least 1 cluster"),
    ({"target_size": 5, "levels": [10, 5], "resampling_steps": [1, 2, 3]},
     "resampling_steps: 3 values for 2 levels"),
    ({"target_size": 5, "resample_size": [4]}, "resample_size: 1 values for 2 levels"),
    ({"target_size": 5, "levels": [9, 8, 7, 6, 5, 4]}, "at most 5 items"),
])
def test_bad_params_are_rejected(params, message):
    with pytest.raises(ValidationError, match=message):
        BalancedParams(**params)


def test_a_corpus_without_any_vector_drops_every_row_as_no_embedding(tmp_path):
    nulls = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(10 * DIM), pa.float32()), DIM,
                                              mask=pa.array(np.ones(10, bool)))
    metrics: dict = {}
    out = run(write_vectors(tmp_path / "a.parquet", nulls), metrics=metrics, target_size=5)
    assert out[C.REASON].to_pylist() == ["no_embedding"] * 10
    assert metrics[1]["rows_with_vector"] == 0 and metrics[1]["selected"] == 0
