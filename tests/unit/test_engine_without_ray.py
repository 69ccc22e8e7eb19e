"""The stage module, every operator and the in-process executor work with `ray` made
unimportable: a global operator runs end to end and its shards are written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLES

SCRIPT = f"""
import sys
sys.modules["ray"] = None  # `import ray` now raises ImportError
from operators import registry
from pipelines import inprocess, stages
from pipelines.shards import discover
from pipelines.writer import ShardWriter, StepInfo
from curate.recipe import parse_recipe

ops = registry.catalogue()
assert len(ops) >= 10, ops
loaded = parse_recipe(
    "name: t\\ninput: {{path: '{SAMPLES}/corpus/*.parquet'}}\\noutput: {{path: OUT}}\\n"
    "steps:\\n  - op: text.normalize\\n  - op: dedup.exact\\n  - op: dedup.minhash\\n")
shards = discover(f"{SAMPLES}/corpus/*.parquet", "auto", "text", "id")
steps = [StepInfo(0, "input.read", "input")] + [
    StepInfo(i, op.name, op.name) for i, op in enumerate(loaded.operators, start=1)]
writer = ShardWriter(shards, steps, "r", sys.argv[1], "id", 100_000, "zstd")
summaries, ex = inprocess.build(shards, loaded.operators, writer, text_column="text",
                                id_column="id", max_doc_bytes=8_000_000, batch_rows=5000)
rows = [r for t in summaries for r in t.to_pylist()]
assert "ray" not in {{m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}}
print(sum(r["rows"] for r in rows), sum(r["kept"] for r in rows), ex.metrics[3]["components"])
"""


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus not present")
def test_a_global_operator_runs_with_ray_unimportable(tmp_path):
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows, kept, components = map(int, res.stdout.split())
    assert rows == 11856 and 0 < kept < rows and components > 0
    assert list((tmp_path / "staging").glob("part-*.parquet"))
