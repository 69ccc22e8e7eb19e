"""Both engines keep the same removed rows (a sample chosen per shard, not per block) and
count the same tokens."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from curate.stats import query
from pipelines.runner import run

pytestmark = pytest.mark.ray

RECIPE = """\
name: removed-engines
input: {{path: 'data/quickstart/*.parquet', batch_rows: 300}}
output: {{path: '{out}', rows_per_shard: 1000, keep_removed: sample, removed_per_reason: 6}}
execution: {{num_cpus: 2, engine: {engine}, seed: 5}}
steps:
  - op: text.normalize
  - op: dedup.exact
  - op: filter.length
    params: {{min_words: 40}}
"""


def removed(out) -> dict:
    files = sorted(out.glob("_curate/runs/*/removed/part-*.parquet"))
    return {f.name: pq.read_table(f).drop_columns(["run_id"]).to_pylist() for f in files}


def test_ray_and_in_process_keep_the_same_removed_rows(ray_session, tmp_path):
    got, ops = {}, {}
    for engine in ("ray", "inprocess"):
        out = tmp_path / engine
        loaded = parse_recipe(RECIPE.format(out=out, engine=engine))
        run(loaded.recipe.run_spec(engine), loaded.operators)
        got[engine] = removed(out)
        ops[engine] = query(out, "SELECT step, rows_out, tokens_in, tokens_out, bytes_out, "
                                 "words_out FROM ops ORDER BY step").to_pylist()
    assert ops["ray"] == ops["inprocess"]
    assert all(r["tokens_out"] > 0 for r in ops["ray"])
    assert len(got["ray"]) == 4
    assert got["ray"] == got["inprocess"]
    rows = [r for rows in got["ray"].values() for r in rows]
    assert rows and all(r["text"] for r in rows)
    assert max(sum(1 for r in rows_ if r["reason"] == "too_short")
               for rows_ in got["ray"].values()) == 6
