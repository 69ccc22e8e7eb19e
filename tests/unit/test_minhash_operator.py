"""dedup.minhash as an operator: its stages run in-process (no Ray) on real data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.evaluation import precision_recall, predicted_pairs, true_pairs
from curate.recipe import parse_recipe
from pipelines import columns as C
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import SAMPLES


def dedup(pattern: str, params: str = "{threshold: 0.8}") -> tuple[pa.Table, dict]:
    loaded = parse_recipe(f"name: t\ninput: {{path: '{pattern}'}}\noutput: {{path: o}}\n"
                          f"steps:\n  - op: dedup.minhash\n    params: {params}\n")
    batches = [b for s in discover(pattern, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, 2_000)]
    metrics: dict = {}
    out = run_operators(batches, loaded.operators, metrics)
    return pa.concat_tables(out), metrics[1]


def test_tiny_corpus_keeps_the_longest_of_each_cluster(tmp_path):
    base = "the quick brown fox jumps over the lazy dog near the river bank today "
    rows = [{"id": "short", "text": base * 3}, {"id": "long", "text": base * 3 + "again"},
            {"id": "other", "text": "completely unrelated words " * 5},
            {"id": "copy", "text": base * 3}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    table, metrics = dedup(str(tmp_path / "a.parquet"))
    got = {r["id"]: (r[C.REASON], r[C.DETAIL]) for r in table.to_pylist()}
    assert got["long"] == (None, None) and got["other"] == (None, None)
    assert got["short"] == ("near_duplicate", "long")
    assert got["copy"] == ("near_duplicate", "long")
    assert metrics["components"] == 1 and metrics["rows_removed"] == 2
    sig = {r["id"]: (r["_s1:component"], r["_s1:component_size"]) for r in table.to_pylist()}
    assert sig["short"] == ("long", 3) and sig["other"] == ("other", 1)
    assert not [c for c in table.column_names if C.is_temporary(c)]


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus not present")
def test_precision_and_recall_on_the_sample_corpus():
    table, metrics = dedup(str(SAMPLES / "corpus" / "*.parquet"))
    gone = table.filter(pa.array(np.asarray(table[C.REASON].is_valid())))
    predicted = predicted_pairs(zip(gone["id"].to_pylist(), gone[C.DETAIL].to_pylist(),
                                    strict=True))
    clusters = pq.read_table(SAMPLES / "dedup_clusters.parquet")
    truth = true_pairs(zip(clusters["id"].to_pylist(), clusters["cluster_id"].to_pylist(),
                           strict=True))
    precision, recall = precision_recall(predicted, truth)
    assert precision >= 0.97 and recall >= 0.97, (precision, recall, metrics)
    assert metrics["rows_removed"] == gone.num_rows
    assert metrics["verified_pairs"] <= metrics["candidate_pairs"]


def test_no_candidates_keeps_everything(tmp_path):
    rows = [{"id": f"d{i}", "text": f"entirely different document number {i} " * (i + 1)}
            for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    table, metrics = dedup(str(tmp_path / "a.parquet"))
    assert table[C.REASON].null_count == 5
    assert metrics["candidate_pairs"] == 0 and metrics["components"] == 0


def test_resolve_accepts_side_records_without_columns():
    """Ray hands a resolve stage an empty, column-less table when no bucket had a pair."""
    from operators.base import Context
    from operators.dedup.minhash import MinHashDedup, MinHashParams

    op = MinHashDedup(MinHashParams(), Context())
    out = op.components(pa.table({}), pa.table({}))
    assert out.num_rows == 0 and C.ORDER in out.column_names
