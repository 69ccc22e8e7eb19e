"""The `removed` table: dropped rows with their text, all, a deterministic sample, or none."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pipelines import columns as C
from pipelines import layout
from pipelines.shards import Shard
from pipelines.tables import REMOVED_SCHEMA
from pipelines.writer import Recording, ShardWriter, StepInfo, sample_per_group

STEPS = [StepInfo(0, "input.read", "input"), StepInfo(1, "filter.length", "short"),
         StepInfo(2, "dedup.exact", "exact")]
N = 300


def carried(n: int = N) -> pa.Table:
    """Rows of one shard: every 3rd dropped at step 1 (two reasons), every 5th at step 2."""
    step = [1 if i % 3 == 0 else 2 if i % 5 == 0 else None for i in range(n)]
    reason = [None if s is None else "exact_duplicate" if s == 2
              else "too_short" if i % 2 else "too_long" for i, s in enumerate(step)]
    return pa.table({
        "id": [f"doc-{i}" for i in range(n)], "text": [f"text of row {i}" for i in range(n)],
        C.ORDER: pa.array(np.arange(n), pa.int64()), C.SHARD: pa.array(np.zeros(n, np.int32)),
        C.DROP_STEP: pa.array(step, pa.int16()), C.REASON: reason,
        C.DETAIL: [None if s is None else f"detail {i}" for i, s in enumerate(step)],
    })


def write(tmp_path, rows: pa.Table, **recording) -> pa.Table | None:
    shard = Shard(0, str(tmp_path / "in.parquet"), "in.parquet", "parquet", rows.num_rows, True)
    run_dir = tmp_path / "run"
    ShardWriter([shard], STEPS, "run-1", str(run_dir), "id", 1000, "zstd",
                Recording(**recording))(rows)
    path = layout.removed_file(run_dir, 0)
    return pq.read_table(path) if path.exists() else None


def test_all_keeps_every_dropped_row_with_its_text(tmp_path):
    rows = carried()
    got = write(tmp_path, rows, keep_removed="all")
    assert got.schema == REMOVED_SCHEMA
    dead = rows.filter(rows[C.DROP_STEP].is_valid())
    assert got.num_rows == dead.num_rows
    assert got["id"].to_pylist() == dead["id"].to_pylist()
    assert got["text"].to_pylist() == dead["text"].to_pylist()
    assert got["reason"].to_pylist() == dead[C.REASON].to_pylist()
    assert got["detail"].to_pylist() == dead[C.DETAIL].to_pylist()
    by_step = dict(zip(got["step"].to_pylist(), got["name"].to_pylist(), strict=False))
    assert by_step == {1: "short", 2: "exact"}
    assert set(got["run_id"].to_pylist()) == {"run-1"}


def test_none_writes_no_file(tmp_path):
    assert write(tmp_path, carried(), keep_removed="none") is None


def test_sample_is_the_smallest_seeded_hashes_per_step_and_reason(tmp_path):
    rows = carried()
    got = write(tmp_path, rows, keep_removed="sample", removed_per_reason=7, seed=11)
    dead = rows.filter(rows[C.DROP_STEP].is_valid()).to_pylist()
    groups: dict = {}
    for r in dead:
        groups.setdefault((r[C.DROP_STEP], r[C.REASON]), []).append(r["id"])
    want = set()
    for ids in groups.values():
        assert len(ids) > 7  # every group is larger than the sample
        want |= set(sorted(ids, key=lambda i: xxhash.xxh3_64_intdigest(i.encode(), 11))[:7])
    assert set(got["id"].to_pylist()) == want
    assert got.num_rows == 7 * len(groups)
    texts = dict(zip(rows["id"].to_pylist(), rows["text"].to_pylist(), strict=True))
    assert all(texts[i] == t for i, t in zip(got["id"].to_pylist(), got["text"].to_pylist(),
                                              strict=True))


def test_sample_does_not_depend_on_row_order_or_blocks_but_on_the_seed(tmp_path):
    rows = carried()
    first = write(tmp_path / "a", rows, removed_per_reason=5, seed=3)
    shuffled = rows.take(np.random.default_rng(0).permutation(rows.num_rows))
    # The writer receives a shard's rows in any block order; it must pick the same rows.
    blocks = pa.concat_tables([shuffled.slice(0, 100), shuffled.slice(100)])
    again = write(tmp_path / "b", blocks, removed_per_reason=5, seed=3)
    assert again.equals(first)
    other_seed = write(tmp_path / "c", rows, removed_per_reason=5, seed=4)
    assert set(other_seed["id"].to_pylist()) != set(first["id"].to_pylist())


def test_small_groups_are_kept_whole():
    step = pa.chunked_array([pa.array([1, 1, 2, 2, 2], pa.int16())])
    reason = pa.chunked_array([pa.array(["a", None, "b", "b", "b"])])
    ids = pa.array(["x", "y", "z", "w", "v"])
    picked = sample_per_group(step, reason, ids, 2, 0)
    assert picked[:2].tolist() == [0, 1]  # groups (1, a) and (1, null): one row each
    assert len(picked) == 4 and set(picked[2:]) <= {2, 3, 4}
    assert sample_per_group(step.slice(0, 0), reason.slice(0, 0), ids.slice(0, 0), 2, 0).size == 0
