"""The stage capabilities (fit-and-broadcast, model-backed and grouped stages) run the
same in this process and through Ray: a toy operator's output, byte for byte."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from operators.base import population
from pipelines import inprocess
from pipelines.fitted import FitStore
from pipelines.runner import run
from pipelines.stages import merge_sample, sample_candidates
from tests.conftest import SAMPLES, run_outputs
from tests.toy_operators import ToyClusters, ToyParams

pytestmark = pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus not present")
CORPUS = f"{SAMPLES}/corpus/*.parquet"


def _recipe(out, engine):
    return parse_recipe(f"name: toy\ninput: {{path: '{CORPUS}'}}\n"
                        f"output: {{path: '{out}', rows_per_shard: 2000}}\n"
                        f"execution: {{engine: {engine}}}\nsteps:\n  - op: text.normalize\n"
                        # a stand-in step: its operator is replaced by the toy one
                        "  - op: filter.length\n    name: toy\n")


def _run(out, engine):
    loaded = _recipe(out, engine)
    toy = ToyClusters(ToyParams(k=4, sample=300, per_group=3), loaded.recipe.context())
    return run(loaded.run_spec(), [loaded.operators[0], toy])


@pytest.mark.ray
def test_toy_operator_is_identical_in_process_and_on_ray(ray_session, tmp_path):
    ray_run = _run(tmp_path / "ray", "ray")
    _run(tmp_path / "local", "inprocess")
    on_ray, local = run_outputs(tmp_path / "ray"), run_outputs(tmp_path / "local")
    assert any(k.startswith("part-") for k in local) and "signals/part-00000.parquet" in local
    assert on_ray == local
    dropped = ray_run.ops[-1]["rows_dropped"]
    assert 0 < dropped < ray_run.ops[-1]["rows_in"]
    # the fitted value is recorded under the run folder
    saved = FitStore(tmp_path / "ray" / "_curate" / "runs" / ray_run.run_id / "fitted")
    assert saved.load(2, "centroids").shape == (4,)
    # ... and `curate stats` shows it
    from curate.stats import query

    rows = query(tmp_path / "ray", "SELECT step, name, count(*) AS n FROM fitted GROUP BY ALL")
    assert rows.to_pylist() == [{"step": 2, "name": "centroids", "n": 4}]


def test_sample_is_the_same_whatever_the_batches():
    rows = inprocess.read_shards(_shards(), "text", "id", 8_000_000, 500)
    one = merge_sample([sample_candidates(_concat(rows), ("text",), 100, 7)], 100)
    many = merge_sample([sample_candidates(b, ("text",), 100, 7) for b in rows], 100)
    assert one.equals(many, check_metadata=True) and one.num_rows == 100
    assert population(one) == sum(b.num_rows for b in rows)  # the rows it was drawn from
    orders = one["_order"].to_numpy()
    assert np.all(np.diff(orders) > 0)  # in input order
    other_seed = merge_sample([sample_candidates(b, ("text",), 100, 8) for b in rows], 100)
    assert not other_seed.equals(one)


def _shards():
    from pipelines.shards import discover

    return discover(CORPUS, "auto", "text", "id")


def _concat(tables):
    from pipelines.stages import concat

    return concat(tables)


def test_a_stage_using_an_unknown_fit_is_an_error():
    import pyarrow as pa

    from operators.base import Stage

    class Broken(ToyClusters):
        name = "test.broken_uses"

        def stages(self):
            return [Stage("x", self.assign, uses=("nope",))]

    batches = inprocess.read_shards(_shards()[:1], "text", "id", 8_000_000, 500)
    with pytest.raises(ValueError, match="uses \\['nope'\\]"):
        inprocess.run_operators(batches, [Broken(ToyParams())])
    assert isinstance(batches[0], pa.Table) and batches[0].num_rows


def test_fit_values_round_trip_through_the_store(tmp_path):
    import pyarrow as pa

    store = FitStore(tmp_path)
    store.save(3, "centroids", np.arange(6, dtype=np.float32).reshape(2, 3))
    store.save(3, "table", pa.table({"a": [1, 2]}))
    store.save(3, "other", {"k": 5})
    assert store.load(3, "centroids").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert store.load(3, "table").to_pylist() == [{"a": 1}, {"a": 2}]
    assert store.load(3, "other") == {"k": 5}
    assert store.load(4, "centroids") is None
    assert pq.read_schema(tmp_path / "step-003-table.table.parquet").names == ["a"]
    store.save(3, "flat", np.array([1.5, 2.5]))
    assert store.load(3, "flat").tolist() == [1.5, 2.5]
    assert store.load(3, "centroids").dtype == np.float32
