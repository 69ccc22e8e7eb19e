"""Accounting, atomic writes and the output lock, without Ray."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines.accounting import funnel
from pipelines.errors import AccountingError, OutputLockedError
from pipelines.lock import output_lock
from pipelines.shards import Shard
from pipelines.writer import ShardWriter, StepInfo, atomic_write

STEPS = [StepInfo(0, "input.read", "input"), StepInfo(1, "filter.length", "len")]


def carried(n: int, dropped_at: dict[int, int]) -> pa.Table:
    steps = [dropped_at.get(i) for i in range(n)]
    return pa.table({
        "id": [f"r{i}" for i in range(n)], "text": ["t"] * n,
        C.ORDER: pa.array(np.arange(n), pa.int64()), C.SHARD: pa.array(np.zeros(n, np.int32)),
        C.DROP_STEP: pa.array(steps, pa.int16()),
        C.REASON: [None if s is None else "why" for s in steps],
        C.DETAIL: [None if s is None else "detail" for s in steps],
    })


def writer(tmp_path, rows: int) -> ShardWriter:
    shard = Shard(0, str(tmp_path / "in.parquet"), "in.parquet", "parquet", rows, True)
    return ShardWriter([shard], STEPS, "run", str(tmp_path / "run"), "id", 2, "zstd")


def test_writer_counts_and_writes_every_row(tmp_path):
    summary = writer(tmp_path, 5)(carried(5, {1: 0, 3: 1})).to_pylist()[0]
    assert summary == {"shard": 0, "rows": 5, "kept": 3, "dropped": [1, 1], "seconds": [0, 0],
                       "tokens": None, "bytes_out": [4, 3], "words_out": [4, 3],
                       "tokens_out": None}
    parts = sorted((tmp_path / "run" / "staging").glob("*.parquet"))
    assert [p.name for p in parts] == ["part-00000-0000.parquet", "part-00000-0001.parquet"]
    kept = pa.concat_tables(pq.read_table(p) for p in parts)
    assert kept["id"].to_pylist() == ["r0", "r2", "r4"]
    assert kept.column_names == ["id", "text"]
    dropped = pq.read_table(tmp_path / "run" / "dropped" / "part-00000.parquet")
    assert dropped.select(["step", "op", "id"]).to_pylist() == [
        {"step": 0, "op": "input.read", "id": "r1"}, {"step": 1, "op": "filter.length", "id": "r3"}]


def test_writer_refuses_lost_rows(tmp_path):
    with pytest.raises(AccountingError, match="6 rows in the input but 5 reached"):
        writer(tmp_path, 6)(carried(5, {}))


def test_writer_refuses_duplicated_rows(tmp_path):
    table = carried(3, {})
    doubled = pa.concat_tables([table, table.slice(0, 1)])
    with pytest.raises(AccountingError, match="1 duplicated"):
        writer(tmp_path, 4)(doubled)


def test_funnel_chains_steps_and_checks_totals():
    shards = [Shard(0, "a", "a", "parquet", 5, True), Shard(1, "b", "b", "parquet", 0, True)]
    summaries = [{"shard": 0, "rows": 5, "kept": 3, "dropped": [1, 1], "seconds": [0.0, 1.0]}]
    rows = funnel(shards, summaries, STEPS)
    assert [(r["rows_in"], r["rows_out"], r["rows_dropped"]) for r in rows] == [(5, 4, 1),
                                                                                (4, 3, 1)]
    with pytest.raises(AccountingError, match="no rows reached the writer"):
        funnel(shards + [Shard(2, "c", "c", "parquet", 2, True)], summaries, STEPS)
    bad = [{**summaries[0], "kept": 4}]
    with pytest.raises(AccountingError, match="4 rows written but the funnel ends at 3"):
        funnel(shards, bad, STEPS)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "part.parquet"

    def crash(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(pa.table({"a": [1]}), target)
    assert list(tmp_path.iterdir()) == []


def test_output_lock_refuses_a_second_writer(tmp_path):
    with (output_lock(tmp_path), pytest.raises(OutputLockedError, match="being written by"),
          output_lock(tmp_path)):
        pass
    assert not (tmp_path / "_curate" / "lock").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / "_curate" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{os.uname().nodename} {dead.pid}")
    with output_lock(tmp_path):
        assert lock.read_text().endswith(str(os.getpid()))


def test_interrupted_publish_is_finished_by_the_next_run(tmp_path):
    import json

    from pipelines.publish import finish_publish

    out = tmp_path
    (out / "_curate").mkdir()
    staging = out / "_curate" / "runs" / "r2" / "staging"
    staging.mkdir(parents=True)
    old = ["part-00000-0000.parquet", "part-00001-0000.parquet"]
    for name in old:
        (out / name).write_text("old run")
    (out / "_curate" / "manifest.json").write_text(json.dumps({"run_id": "r1", "files": old}))
    (staging / "part-00000-0000.parquet").write_text("new run")
    (out / "_curate" / "publishing").write_text(json.dumps(
        {"staging": str(staging), "run_id": "r2", "files": ["part-00000-0000.parquet"]}))
    # As if the process died after moving nothing: the next run completes the publish.
    finish_publish(out)
    assert {p.name: p.read_text() for p in out.glob("part-*")} == {
        "part-00000-0000.parquet": "new run"}
    assert not (out / "_curate" / "publishing").exists() and not staging.exists()
    manifest = json.loads((out / "_curate" / "manifest.json").read_text())
    assert manifest == {"run_id": "r2", "files": ["part-00000-0000.parquet"]}
