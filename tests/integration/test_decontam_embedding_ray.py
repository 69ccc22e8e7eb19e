"""decontam.embedding on a real embedded Ray (fit on the driver, the match stage in an actor
pool with the real model): the same bytes as the in-process engine, the leaked item found."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate.recipe import parse_recipe
from pipelines.runner import run
from tests.conftest import SAMPLES, run_outputs

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus absent")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """20 GSM8K items (2 of them planted, as paraphrase and verbatim, in the sample kit's
    contaminated corpus); 12 documents in two shards: those 2 leaks and 10 clean ones."""
    root = tmp_path_factory.mktemp("decontam-emb")
    labels = pq.read_table(SAMPLES / "contamination_labels.parquet").to_pylist()
    leaks = [next(r for r in labels if r["kind"] == k) for k in ("paraphrase", "verbatim")]
    bench = pq.read_table(SAMPLES / "bench.parquet").to_pylist()
    planted = {r["bench_id"] for r in labels}
    items = [r for r in bench if r["bench_id"] in {x["bench_id"] for x in leaks}]
    items += [r for r in bench if r["bench_id"] not in planted][:18]
    (root / "bench").mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": r["bench_id"], "benchmark": "gsm8k",
                                          "text": r["text"]} for r in items]),
                   root / "bench" / "gsm8k.parquet")
    corpus = pa.concat_tables([pq.read_table(p) for p in
                               sorted((SAMPLES / "contaminated").glob("*.parquet"))])
    ids = corpus["id"].to_pylist()
    leak_rows = [ids.index(x["id"]) for x in leaks]
    clean_rows = [i for i in range(0, 400, 37) if ids[i] not in {r["id"] for r in labels}][:10]
    docs = corpus.select(["id", "text"]).take(leak_rows + clean_rows)
    (root / "in").mkdir()
    pq.write_table(docs.slice(0, 7), root / "in" / "a.parquet")
    pq.write_table(docs.slice(7), root / "in" / "b.parquet")
    return root, leaks


def _run(root, out, engine):
    params = {"benchmarks": [str(root / "bench" / "*.parquet")], "backend": "torch",
              "batch_size": 1}  # one text per pass: a vector never depends on batch-mates
    recipe = {"name": "decontam", "input": {"path": str(root / "in" / "*.parquet"),
                                            "batch_rows": 4},
              "output": {"path": str(out), "rows_per_shard": 100},
              "execution": {"engine": engine, "concurrency": 2},
              "steps": [{"op": "decontam.embedding", "params": params}]}
    loaded = parse_recipe(yaml.safe_dump(recipe))
    return run(loaded.run_spec(), loaded.operators)


def test_embedding_decontam_on_ray_equals_in_process(ray_session, inputs, tmp_path):
    root, leaks = inputs
    on_ray = _run(root, tmp_path / "ray", "ray")
    local = _run(root, tmp_path / "local", "inprocess")
    got, want = run_outputs(tmp_path / "local"), run_outputs(tmp_path / "ray")
    assert got.keys() == want.keys() and any(k.startswith("part-") for k in want)
    for key in want:
        assert got[key] == want[key], key
    assert on_ray.ops[-1]["metrics"] == local.ops[-1]["metrics"]
    figures = json.loads(on_ray.ops[-1]["metrics"])
    assert figures["items"] == 20 and figures["docs"] == 12 and figures["flagged"] == 2
    dropped = pa.concat_tables([pq.read_table(p) for p in
                                (tmp_path / "ray").glob("_curate/runs/*/dropped/*.parquet")])
    assert sorted(dropped["id"].to_pylist()) == sorted(x["id"] for x in leaks)
    assert set(dropped["reason"].to_pylist()) == {"contaminated"}
    by_id = dict(zip(dropped["id"].to_pylist(), dropped["detail"].to_pylist(), strict=True))
    for leak in leaks:
        assert by_id[leak["id"]].startswith(f"benchmark=gsm8k item={leak['bench_id']} ")
