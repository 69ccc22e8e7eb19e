"""select.jest on a real embedded Ray: the same bytes as the in-process engine (super-batches
scored in an actor pool that loads the reference model), and the same decisions when the
same rows are split into other shards and blocks."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from pipelines.runner import run
from tests.conftest import run_outputs
from tests.unit.test_jest_step import pairs_table

pytestmark = pytest.mark.ray
ROWS = 150


def _write(root, cuts: list[int]) -> str:
    root.mkdir()
    table = pairs_table(ROWS)
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, ROWS], strict=True)):
        pq.write_table(table.slice(a, b - a), root / f"part-{i}.parquet")
    return str(root / "*.parquet")


def _run(glob, out, engine, batch_rows=5000):
    # The learner is a pair of vector columns, the reference the packaged MiniLM on the
    # texts (torch), so the select stage runs in actors that load a model.
    loaded = parse_recipe(
        f"name: jest\ninput: {{path: '{glob}', batch_rows: {batch_rows}}}\n"
        f"output: {{path: '{out}', rows_per_shard: 100}}\n"
        f"execution: {{engine: {engine}, concurrency: 2, seed: 5}}\nsteps:\n"
        "  - op: select.jest\n    params: {super_batch: 64, filter_ratio: 0.75, chunks: 4,\n"
        "      learner: {columns: [l_left, l_right]}, reference: {backend: torch}}\n")
    return run(loaded.run_spec(), loaded.operators)


def _decisions(out) -> dict:
    dropped = pq.read_table(next(out.glob("_curate/runs/*/dropped/*.parquet")).parent)
    return dict(zip(dropped["id"].to_pylist(), dropped["detail"].to_pylist(), strict=True))


def test_ray_equals_in_process_and_the_shard_split_does_not_matter(ray_session, tmp_path):
    glob = _write(tmp_path / "in", [70])
    on_ray = _run(glob, tmp_path / "ray", "ray", batch_rows=16)
    _run(glob, tmp_path / "local", "inprocess")
    got, want = run_outputs(tmp_path / "local"), run_outputs(tmp_path / "ray")
    assert got.keys() == want.keys() and any(k.startswith("part-") for k in want)
    for key in want:
        assert got[key] == want[key], key
    kept = pq.read_table(tmp_path / "ray").num_rows
    # Two full super-batches keep 16 each; the last 22 rows k = floor(22 x 0.25) = 5, in
    # min(4, 5) = 4 chunks of floor(5 / 4) = 1.
    assert kept == 2 * 16 + 4
    [step] = [r for r in on_ray.ops if r["name"] == "select.jest"]
    assert step["rows_in"] == ROWS and step["rows_out"] == kept
    # Other shards: other `_order`s, the same input order, so the same super-batches.
    other = _write(tmp_path / "in2", [20, 100])
    _run(other, tmp_path / "local2", "inprocess", batch_rows=7)
    assert _decisions(tmp_path / "local2") == _decisions(tmp_path / "ray")


def test_the_training_loop_example_with_ray_data_as_the_loader(ray_session):
    from tests.unit.test_jest_step_example import load_example

    example = load_example()
    batches = example.ray_loader(example.synthetic_pairs(320, 8, 0.3, 0), 160, seed=0)
    first = [next(batches) for _ in range(3)]  # two per epoch, then a reshuffled epoch
    assert all(b["left"].shape == (160, 8) and b["noisy"].dtype == bool for b in first)
    assert sorted(map(tuple, np.concatenate([first[0]["left"], first[1]["left"]])))\
        == sorted(map(tuple, example.synthetic_pairs(320, 8, 0.3, 0)["left"]))
    result = example.train(steps=4, super_batch=160, chunks=8, pool=640, dim=8,
                           reference_steps=10, use_ray=True)
    assert 0 <= result["noisy_share_chosen"] <= 1 and result["last_loss"] > 0
