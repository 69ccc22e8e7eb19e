"""select.balanced writes the same bytes in this process and on a real embedded Ray, and
the same bytes however the rows are cut into batches and spread over workers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from pipelines.runner import run
from tests.conftest import run_outputs

DIM = 16
TOPICS = [240, 30, 30, 30, 30]  # one over-represented topic


def _corpus() -> pa.Table:
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((len(TOPICS), DIM)).astype(np.float32)
    x = np.concatenate([c + 0.1 * rng.standard_normal((n, DIM)).astype(np.float32)
                        for c, n in zip(centres, TOPICS, strict=True)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return pa.table({"id": [f"r{i}" for i in range(len(x))],
                     "text": [f"text {i}" for i in range(len(x))],
                     "embedding": pa.FixedSizeListArray.from_arrays(
                         pa.array(x.reshape(-1), pa.float32()), DIM)})


def _write(root, cuts: list[int]) -> str:
    """The corpus in shards cut at `cuts`."""
    root.mkdir()
    table = _corpus()
    bounds = [0, *cuts, table.num_rows]
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(table.slice(a, b - a), root / f"{i:02d}.parquet")
    return str(root / "*.parquet")


def _run(glob, out, engine, batch_rows=5000, concurrency=1):
    loaded = parse_recipe(
        f"name: balanced\ninput: {{path: '{glob}', batch_rows: {batch_rows}}}\n"
        f"output: {{path: '{out}', rows_per_shard: 50}}\n"
        f"execution: {{engine: {engine}, concurrency: {concurrency}, seed: 5}}\nsteps:\n"
        "  - op: select.balanced\n"
        "    params: {target_size: 60, levels: [12, 4], niter: 20, sample: 200}\n")
    return run(loaded.run_spec(), loaded.operators)


def _kept_ids(out) -> list[str]:
    return sorted(i for p in sorted(out.glob("part-*.parquet"))
                  for i in pq.read_table(p, columns=["id"])["id"].to_pylist())


@pytest.mark.ray
def test_balanced_selection_is_identical_in_process_and_on_ray(ray_session, tmp_path):
    glob = _write(tmp_path / "in", [170])
    on_ray = _run(glob, tmp_path / "ray", "ray")
    _run(glob, tmp_path / "local", "inprocess")
    got, want = run_outputs(tmp_path / "local"), run_outputs(tmp_path / "ray")
    assert any(k.startswith("part-") for k in want) and got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    assert on_ray.ops[-1]["rows_dropped"] == sum(TOPICS) - 60
    dropped = [v for k, v in want.items() if k.startswith("dropped/")]
    assert {r for d in dropped for r in d["reason"]} == {"balanced_out"}

    # Batches of 16 rows over two workers: the same bytes again.
    _run(glob, tmp_path / "ray16", "ray", batch_rows=16, concurrency=2)
    split = run_outputs(tmp_path / "ray16")
    assert split.keys() == want.keys()
    for key in want:
        assert split[key] == want[key], key
    kept = _kept_ids(tmp_path / "ray")
    assert len(kept) == 60
    topic = np.repeat(np.arange(len(TOPICS)), TOPICS)
    per_topic = np.bincount(topic[[int(i[1:]) for i in kept]], minlength=len(TOPICS))
    assert per_topic[0] < 0.5 * 60, per_topic  # proportional would be 40 of 60

