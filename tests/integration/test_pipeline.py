"""Whole runs through a real embedded Ray: accounting, determinism, failure safety."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.evaluation import precision_recall, predicted_pairs, true_pairs
from curate.recipe import parse_recipe
from curate.stats import query
from operators.base import BatchResult, MapOperator
from pipelines.errors import root_cause
from pipelines.runner import run
from tests.conftest import SAMPLES, write_jsonl, write_parquet

pytestmark = pytest.mark.ray

STEPS = """\
  - op: text.normalize
  - op: filter.length
    name: short
    params: {min_words: 3}
  - op: dedup.exact
"""


@pytest.fixture(scope="module")
def messy_input(tmp_path_factory) -> Path:
    """Three shards with every kind of trouble, 15 rows in all."""
    root = tmp_path_factory.mktemp("messy")
    write_parquet(root / "a.parquet", [
        {"id": "a0", "text": "the quick brown fox"},
        {"id": "a1", "text": None},
        {"id": "a2", "text": "too short"},
        {"id": "a3", "text": "the  quick brown fox"},          # duplicate of a0 once normalised
        {"id": "a4", "text": "jumps over the lazy dog"},
    ])
    write_parquet(root / "b.parquet", [], schema=pa.schema([("id", pa.string()),
                                                            ("text", pa.string())]))
    write_jsonl(root / "c.jsonl", [
        {"id": "c0", "text": "jumps over the lazy dog"},     # duplicate of a4, later shard
        "{broken",
        b'{"id": "c2", "text": "bad \xff byte here"}',
        {"id": "c3", "text": 7},
        {"id": "c4", "text": "a perfectly fine line of text"},
        {"id": "c5", "text": "   "},
        {"id": "c6", "text": "x " * 600},                    # over max_doc_bytes
        {"id": "c7", "text": "another perfectly fine line"},
        {"id": "c8", "text": "the last fine line"},
        {"id": "c9"},
    ])
    return root


def run_recipe(input_glob: str, out: Path, steps: str = STEPS, operators=None):
    text = (f"name: t\ninput: {{path: '{input_glob}', max_doc_bytes: 1000}}\n"
            f"output: {{path: '{out}', rows_per_shard: 2}}\nsteps:\n{steps}")
    loaded = parse_recipe(text)
    return run(loaded.recipe.run_spec(text), operators or loaded.operators)


def test_every_row_is_output_or_dropped_with_a_reason(ray_session, messy_input, tmp_path):
    result = run_recipe(str(messy_input / "*"), tmp_path / "out")
    ops = {r["name"]: r for r in result.ops}
    assert ops["input"]["rows_in"] == 15
    for prev, step in zip(result.ops, result.ops[1:], strict=False):
        assert step["rows_in"] == prev["rows_out"]
    for step in result.ops:
        assert step["rows_in"] == step["rows_out"] + step["rows_dropped"]

    out_ids = pa.concat_tables(pq.read_table(p) for p in sorted(
        (tmp_path / "out").glob("part-*.parquet")))["id"].to_pylist()
    dropped = query(tmp_path / "out", "SELECT id, name, reason, detail FROM dropped").to_pylist()
    dropped_ids = [d["id"] for d in dropped]
    assert sorted(out_ids + dropped_ids) == sorted(
        ["a0", "a1", "a2", "a3", "a4", "c0", "c.jsonl:1", "c.jsonl:2", "c3", "c4", "c5", "c6", "c7",
         "c8", "c9"])
    assert out_ids == ["a0", "a4", "c4", "c7", "c8"]  # input order, across shards
    why = {d["id"]: (d["name"], d["reason"], d["detail"]) for d in dropped}
    assert why["a1"][:2] == ("input", "null_text")
    assert why["c.jsonl:1"][:2] == ("input", "invalid_json")
    assert why["c.jsonl:2"][:2] == ("input", "invalid_utf8")
    assert why["c3"][:2] == ("input", "non_string_text")
    assert why["c6"][:2] == ("input", "too_large")
    assert why["c9"][:2] == ("input", "null_text")
    assert why["c5"][:2] == ("text.normalize", "empty_text")
    assert why["a2"] == ("short", "too_short", "words=2 < min_words=3")
    assert why["a3"] == ("dedup.exact", "exact_duplicate", "a0")
    assert why["c0"] == ("dedup.exact", "exact_duplicate", "a4")

    signals = query(tmp_path / "out", "SELECT name, key, count(*) AS n FROM signals "
                                      "GROUP BY ALL ORDER BY ALL").to_pylist()
    assert {"name": "short", "key": "words", "n": 8} in signals
    runs = query(tmp_path / "out", "SELECT status, rows_in, rows_out FROM runs").to_pylist()
    assert runs == [{"status": "succeeded", "rows_in": 15, "rows_out": 5}]


def test_same_recipe_twice_gives_identical_shards(ray_session, tmp_path):
    samples = Path(__file__).resolve().parents[2] / "data" / "quickstart" / "*.parquet"
    first = run_recipe(str(samples), tmp_path / "one")
    second = run_recipe(str(samples), tmp_path / "two")
    assert first.ops == [dict(r, seconds=r["seconds"]) for r in first.ops]
    a = sorted((tmp_path / "one").glob("part-*.parquet"))
    b = sorted((tmp_path / "two").glob("part-*.parquet"))
    assert [p.name for p in a] == [p.name for p in b] and len(a) > 4
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    assert [r["rows_out"] for r in first.ops] == [r["rows_out"] for r in second.ops]


def test_failed_run_leaves_previous_output_untouched(ray_session, messy_input, tmp_path):
    out = tmp_path / "out"
    run_recipe(str(messy_input / "*"), out)
    before = {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}

    class Explodes(MapOperator):
        name = "test.explodes"
        doc = "fails on the second shard"

        def process(self, batch: pa.Table) -> BatchResult:
            if "c4" in batch["id"].to_pylist():
                raise RuntimeError("boom in the middle of the run")
            return BatchResult.keep_all(batch)

    loaded = parse_recipe(f"name: t\ninput: {{path: '{messy_input}/*'}}\n"
                          f"output: {{path: '{out}'}}\nsteps:\n  - op: text.normalize\n")
    with pytest.raises(Exception) as info:
        run(loaded.recipe.run_spec("x"), [Explodes(loaded.operators[0].params)])
    assert "boom in the middle of the run" in str(root_cause(info.value))
    after = {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}
    assert after == before
    assert not list(out.glob(".*tmp*"))
    runs = query(out, "SELECT status, error FROM all_runs ORDER BY started").to_pylist()
    assert [r["status"] for r in runs] == ["succeeded", "failed"]
    assert "boom" in runs[1]["error"]


def test_operator_that_loses_rows_fails_the_run(ray_session, messy_input, tmp_path):
    class Loses(MapOperator):
        name = "test.loses"
        doc = "returns fewer rows than it was given"

        def process(self, batch: pa.Table) -> BatchResult:
            return BatchResult.keep_all(batch.slice(1))

    loaded = parse_recipe(f"name: t\ninput: {{path: '{messy_input}/a.parquet'}}\n"
                          f"output: {{path: '{tmp_path}'}}\nsteps:\n  - op: text.normalize\n")
    with pytest.raises(Exception) as info:
        run(loaded.recipe.run_spec("x"), [Loses(loaded.operators[0].params)])
    assert "must return every input row" in str(root_cause(info.value))


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus not present")
def test_minhash_through_ray_matches_ground_truth(ray_session, tmp_path):
    steps = "  - op: dedup.minhash\n    name: near\n    params: {threshold: 0.8}\n"
    text = (f"name: t\ninput: {{path: '{SAMPLES}/corpus/*.parquet'}}\n"
            f"output: {{path: '{tmp_path}'}}\nsteps:\n{steps}")
    loaded = parse_recipe(text)
    result = run(loaded.recipe.run_spec(text), loaded.operators)
    gone = query(tmp_path, "SELECT id, detail FROM dropped WHERE reason = 'near_duplicate'")
    predicted = predicted_pairs(zip(gone["id"].to_pylist(), gone["detail"].to_pylist(),
                                    strict=True))
    clusters = pq.read_table(SAMPLES / "dedup_clusters.parquet")
    truth = true_pairs(zip(clusters["id"].to_pylist(), clusters["cluster_id"].to_pylist(),
                           strict=True))
    precision, recall = precision_recall(predicted, truth)
    assert precision >= 0.97 and recall >= 0.97
    metrics = json.loads(result.ops[1]["metrics"])
    assert metrics["rows_removed"] == result.ops[1]["rows_dropped"] == gone.num_rows
    sizes = query(tmp_path, "SELECT max(num) AS biggest FROM signals "
                            "WHERE key = 'component_size'").to_pylist()
    assert sizes[0]["biggest"] >= 2
