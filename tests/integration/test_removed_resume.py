"""A run resumed from a checkpoint keeps the same removed rows and token counts: rows
dropped before the checkpoint reach the writer, with their text, only through it."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from curate.stats import query
from operators.base import BatchResult, MapOperator, Params
from pipelines.runner import run

pytestmark = pytest.mark.ray

RECIPE = """\
name: removed-resume
input: {{path: 'data/quickstart/*.parquet', batch_rows: 500}}
output: {{path: '{out}', rows_per_shard: 1000, keep_removed: all}}
execution: {{num_cpus: 2, engine: ray}}
steps:
  - op: text.normalize
  - op: filter.length
    params: {{min_words: 40}}
  - op: dedup.exact
  - op: filter.length
    name: longer
    params: {{min_words: 80}}
"""


class Crash(MapOperator):
    """Fails on its first batch: the run dies after step 3's checkpoint."""

    name = "test.crash"
    doc = "test-only: raises"

    def process(self, batch: pa.Table) -> BatchResult:
        raise RuntimeError("crashed after the checkpoint")


def removed(out) -> list[dict]:
    files = sorted(out.glob("_curate/runs/*/removed/part-*.parquet"))
    return pq.read_table(files).drop_columns(["run_id"]).to_pylist()


def ops(out) -> list[dict]:
    return query(out, "SELECT step, rows_out, tokens_in, tokens_out, bytes_out, words_out "
                      "FROM ops ORDER BY step").to_pylist()


def test_resumed_run_keeps_the_removed_texts_of_checkpointed_steps(ray_session, tmp_path):
    loaded = parse_recipe(RECIPE.format(out=tmp_path / "out"))
    spec = loaded.recipe.run_spec("removed-resume")
    crashing = [*loaded.operators[:3], Crash(Params())]
    with pytest.raises(Exception, match="crashed after the checkpoint"):  # Ray wraps it
        run(spec, crashing)
    assert list((tmp_path / "out").glob("_curate/runs/*/checkpoints/step-003"))

    resumed = run(spec, loaded.operators)
    assert resumed.resumed_from == 3

    fresh = dataclasses.replace(
        spec, output=dataclasses.replace(spec.output, path=str(tmp_path / "fresh")),
        execution=dataclasses.replace(spec.execution, engine="inprocess"))
    run(fresh, loaded.operators)
    got, want = removed(tmp_path / "out"), removed(tmp_path / "fresh")
    assert {r["step"] for r in want} >= {2, 4}  # dropped before and after the checkpoint
    assert got == want and all(r["text"] for r in got)
    assert ops(tmp_path / "out") == ops(tmp_path / "fresh")
