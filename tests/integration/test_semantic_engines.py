"""dedup.semantic writes the same bytes in this process and on Ray, over a Parquet input
with a vector column (two shards, planted near-copies across them)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from pipelines.runner import run
from tests.conftest import run_outputs

DIM = 16


def _write_input(root):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((120, DIM)).astype(np.float32)
    twins = base[:20] + 0.02 * rng.standard_normal((20, DIM)).astype(np.float32)
    x = np.concatenate([base, twins])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    table = pa.table({"id": [f"r{i}" for i in range(len(x))],
                      "text": [f"text {i}" for i in range(len(x))],
                      "embedding": pa.FixedSizeListArray.from_arrays(
                          pa.array(x.reshape(-1), pa.float32()), DIM)})
    pq.write_table(table.slice(0, 70), root / "a.parquet")
    pq.write_table(table.slice(70), root / "b.parquet")
    return str(root / "*.parquet")


def _run(glob, out, engine):
    loaded = parse_recipe(
        f"name: semantic\ninput: {{path: '{glob}'}}\n"
        f"output: {{path: '{out}', rows_per_shard: 50}}\n"
        f"execution: {{engine: {engine}, concurrency: 1}}\nsteps:\n"
        "  - op: dedup.semantic\n    params: {k: 3, eps: 0.05, sample: 100, block: 32}\n")
    return run(loaded.run_spec(), loaded.operators)


@pytest.mark.ray
def test_semantic_dedup_is_identical_in_process_and_on_ray(ray_session, tmp_path):
    (tmp_path / "in").mkdir()
    glob = _write_input(tmp_path / "in")
    on_ray = _run(glob, tmp_path / "ray", "ray")
    _run(glob, tmp_path / "local", "inprocess")
    got, want = run_outputs(tmp_path / "local"), run_outputs(tmp_path / "ray")
    assert any(k.startswith("part-") for k in want) and got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    assert on_ray.ops[-1]["rows_dropped"] == 20
    dropped = [v for k, v in want.items() if k.startswith("dropped/")]
    reasons = {r for d in dropped for r in d["reason"]}
    assert reasons == {"semantic_duplicate"}
