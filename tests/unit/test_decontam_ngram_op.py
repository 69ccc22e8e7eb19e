"""decontam.ngram as an operator: its stages run in-process over several batches."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curate.recipe import RecipeError, parse_recipe
from pipelines import columns as C
from pipelines.errors import CurateError
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import write_parquet

QUESTIONS = [
    "Mia bakes 24 cookies and gives a third of them to her neighbour Rosa. How many "
    "cookies does Mia have left?\nMia gives 24/3 = <<24/3=8>>8 cookies.\nShe has 24 - 8 = "
    "<<24-8=16>>16 left.\n#### 16",
    "A train leaves Oslo at 9 am travelling 80 km per hour toward Bergen, 480 km away. "
    "When does it arrive?\nIt needs 480/80 = <<480/80=6>>6 hours.\nIt arrives at 3 pm.\n"
    "#### 3",
    "Leo saves 15 dollars a week for a bicycle that costs 240 dollars. How many weeks "
    "must he save?\nHe needs 240/15 = <<240/15=16>>16 weeks.\n#### 16",
]
FILLER = ("The command lists files in the current directory, sorted by name, and prints "
          "their sizes in a human readable format. ")


def write_planted(root: Path) -> tuple[str, str]:
    """A 3-item benchmark and a 2-shard corpus: rows p0 (verbatim item q0), p1 (q1 with
    words dropped), c* clean; returns (benchmark path, corpus glob)."""
    bench = write_parquet(root / "bench" / "gsm.parquet", [
        {"id": f"q{k}", "benchmark": "gsm", "question": q.split("\n")[0],
         "answer": "\n".join(q.split("\n")[1:])} for k, q in enumerate(QUESTIONS)])
    dropped = " ".join(w for i, w in enumerate(QUESTIONS[1].split()) if i % 9 != 4)
    rows = [{"id": "c0", "text": FILLER * 3}, {"id": "p0", "text": FILLER + QUESTIONS[0]},
            {"id": "c1", "text": "Other text entirely. " * 10},
            {"id": "p1", "text": dropped + "\n\n" + FILLER},
            {"id": "c2", "text": FILLER + "Leo saves money for a bicycle."}]
    write_parquet(root / "in" / "a.parquet", rows[:3])
    write_parquet(root / "in" / "b.parquet", rows[3:])
    return str(bench), str(root / "in" / "*.parquet")


def decontam(pattern: str, params: str) -> tuple[pa.Table, dict]:
    loaded = parse_recipe(f"name: t\ninput: {{path: '{pattern}'}}\noutput: {{path: o}}\n"
                          f"steps:\n  - op: decontam.ngram\n    params: {params}\n")
    batches = [b for s in discover(pattern, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, 2)]
    metrics: dict = {}
    out = run_operators(batches, loaded.operators, metrics)
    return pa.concat_tables(out), metrics[1]


def by_id(table: pa.Table) -> dict[str, dict]:
    return {r["id"]: r for r in table.to_pylist()}


def test_planted_items_are_dropped_naming_item_and_span(tmp_path):
    bench, corpus = write_planted(tmp_path)
    table, metrics = decontam(corpus, f"{{benchmarks: ['{bench}'], "
                                      "text_columns: [question, answer]}")
    rows = by_id(table)
    assert {i for i, r in rows.items() if r[C.REASON]} == {"p0", "p1"}
    p0 = rows["p0"]
    assert p0[C.REASON] == "contaminated"
    assert (p0["_s1:benchmark"], p0["_s1:matched_id"], p0["_s1:method"]) == ("gsm", "q0",
                                                                               "ngram")
    assert p0["_s1:score"] == 1.0
    assert p0["text"][int(p0["_s1:span_start"]):int(p0["_s1:span_end"])] == QUESTIONS[0]
    assert p0[C.DETAIL].startswith("benchmark=gsm item=q0 score=1.000 span=")
    assert rows["p1"]["_s1:matched_id"] == "q1" and 0.1 <= rows["p1"]["_s1:score"] < 1
    assert rows["c2"]["_s1:score"] is None and rows["c0"][C.DETAIL] is None
    assert metrics["items"] == 3 and metrics["flagged_rows"] == 2
    assert metrics["items_matched"] == 2 and metrics["index_bytes"] > 0
    assert not [c for c in table.column_names if C.is_temporary(c)]


def test_annotate_keeps_flagged_rows_with_their_signals(tmp_path):
    bench, corpus = write_planted(tmp_path)
    table, _ = decontam(corpus, f"{{benchmarks: ['{bench}'], action: annotate, "
                                "text_columns: [question, answer]}")
    rows = by_id(table)
    assert not any(r[C.REASON] for r in rows.values())
    assert rows["p0"]["_s1:matched_id"] == "q0" and rows["p1"]["_s1:matched_id"] == "q1"


def test_bloom_index_flags_the_same_rows_naming_only_the_benchmark(tmp_path):
    bench, corpus = write_planted(tmp_path)
    table, metrics = decontam(corpus, f"{{benchmarks: ['{bench}'], index: bloom, "
                                      "text_columns: [question, answer]}")
    rows = by_id(table)
    assert {i for i, r in rows.items() if r[C.REASON]} == {"p0", "p1"}
    assert rows["p0"]["_s1:method"] == "bloom" and rows["p0"]["_s1:matched_id"] is None
    assert rows["p0"]["_s1:benchmark"] == "gsm"
    assert metrics["method"] == "bloom" and metrics["bloom_computed_error_rate"] <= 2e-6


def test_a_bad_benchmark_file_is_a_recipe_error_at_the_step(tmp_path):
    write_parquet(tmp_path / "b.parquet", [{"id": "1", "text": "a b c"},
                                           {"id": "1", "text": "d e f"}])
    with pytest.raises(RecipeError, match=r"<recipe>:5: step 'decontam.ngram' \(steps\[0\]\): "
                       r".*b\.parquet row 1: duplicate id '1'"):
        parse_recipe(f"name: t\ninput: {{path: '{tmp_path}/*.jsonl'}}\noutput: {{path: o}}\n"
                     f"steps:\n  - op: decontam.ngram\n    params: "
                     f"{{benchmarks: ['{tmp_path}/b.parquet']}}\n")


def test_an_index_over_max_index_mb_is_refused_naming_the_way_out(tmp_path):
    bench, corpus = write_planted(tmp_path)
    with pytest.raises(CurateError, match=r"decontam.ngram: the index of 3 benchmark items "
                       r"takes 0 MB > max_index_mb=1e-06; raise max_index_mb, or use "
                       r"index: bloom"):
        decontam(corpus, f"{{benchmarks: ['{bench}'], max_index_mb: 0.000001, "
                         "text_columns: [question, answer]}")
