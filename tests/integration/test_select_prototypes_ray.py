"""select.prototypes on a real embedded Ray: the same bytes as the in-process engine, and
the same decisions when the same rows are split into other shards and blocks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from pipelines.runner import run
from tests.conftest import run_outputs

DIM, ROWS = 16, 300


def _corpus() -> pa.Table:
    rng = np.random.default_rng(8)
    centres = rng.standard_normal((4, DIM))
    x = centres[rng.integers(0, 4, ROWS)] + 0.4 * rng.standard_normal((ROWS, DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return pa.table({"id": [f"r{i}" for i in range(ROWS)],
                     "text": [f"text {i}" for i in range(ROWS)],
                     "embedding": pa.FixedSizeListArray.from_arrays(
                         pa.array(x.reshape(-1), pa.float32()), DIM)})


def _write(root, cuts: list[int]) -> str:
    """The corpus cut into shards at `cuts` (rows stay in the same input order)."""
    root.mkdir()
    table = _corpus()
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, ROWS], strict=True)):
        pq.write_table(table.slice(a, b - a), root / f"part-{i}.parquet")
    return str(root / "*.parquet")


def _run(glob, out, engine, batch_rows=5000):
    # sample >= rows: the fit sees every row whatever their `_order`s, so another split
    # into shards (other `_order`s, another hash sample) still fits the same k-means.
    loaded = parse_recipe(
        f"name: prototypes\ninput: {{path: '{glob}', batch_rows: {batch_rows}}}\n"
        f"output: {{path: '{out}', rows_per_shard: 100}}\n"
        f"execution: {{engine: {engine}, concurrency: 2}}\nsteps:\n"
        "  - op: select.prototypes\n    params: {k: 4, keep_fraction: 0.75, sample: 1000}\n")
    return run(loaded.run_spec(), loaded.operators)


def _decisions(out) -> dict:
    """Every row's decision by id: kept or (reason, detail), and its signals."""
    tables = [pq.read_table(p) for p in sorted(out.glob("_curate/runs/*/dropped/*.parquet"))]
    dropped = pa.concat_tables(tables).sort_by("id")
    signals = pa.concat_tables([pq.read_table(p) for p in
                                sorted(out.glob("_curate/runs/*/signals/*.parquet"))])
    signals = signals.drop_columns([c for c in signals.column_names
                                    if c == "run_id"]).sort_by([("id", "ascending"),
                                                                ("key", "ascending")])
    return {"dropped": dropped.select(["id", "reason", "detail"]).to_pydict(),
            "signals": signals.to_pydict()}


@pytest.mark.ray
def test_prototypes_on_ray_equal_in_process_and_any_split(ray_session, tmp_path):
    glob = _write(tmp_path / "two", [140])
    on_ray = _run(glob, tmp_path / "ray", "ray")
    local = _run(glob, tmp_path / "local", "inprocess")
    got, want = run_outputs(tmp_path / "local"), run_outputs(tmp_path / "ray")
    assert any(k.startswith("part-") for k in want) and got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    assert on_ray.ops[-1]["rows_dropped"] == ROWS - round(0.75 * ROWS)
    assert on_ray.ops[-1]["metrics"] == local.ops[-1]["metrics"]
    assert json.loads(on_ray.ops[-1]["metrics"])["removed"] == on_ray.ops[-1]["rows_dropped"]
    # The same rows in three shards read in blocks of 40 rows: the same decisions.
    _run(_write(tmp_path / "three", [50, 200]), tmp_path / "split", "ray", batch_rows=40)
    split, two = _decisions(tmp_path / "split"), _decisions(tmp_path / "ray")
    assert split == two
    assert set(two["dropped"]["reason"]) == {"prototypical"}
