"""Benchmark files for decontam.*: items loaded in order, bad files refused naming file and row."""

from __future__ import annotations

import os

import pytest

from operators.decontam.benchmark_sets import (
    BenchmarkFileError,
    DecontamParams,
    load_benchmark_items,
)
from tests.conftest import write_jsonl, write_parquet

ROWS = [{"id": "q1", "benchmark": "mmlu", "question": "What is 2+2?", "choices": ["3", "4"]},
        {"id": "q2", "benchmark": "mmlu", "question": "Capital of France?", "choices": None}]


def test_items_join_text_columns_in_order_skipping_nulls(tmp_path):
    write_parquet(tmp_path / "a.parquet", ROWS)
    items = load_benchmark_items([str(tmp_path / "*.parquet")], "id", ["question", "choices"])
    assert items.ids == ["q1", "q2"] and items.benchmarks == ["mmlu", "mmlu"]
    assert items.texts == ["What is 2+2?\n3\n4", "Capital of France?"]
    assert items.files == [str(tmp_path / "a.parquet")] * 2 and items.rows == [0, 1]
    assert len(items) == 2


def test_jsonl_and_parquet_together_and_file_stem_as_benchmark(tmp_path):
    write_parquet(tmp_path / "a.parquet", ROWS)
    write_jsonl(tmp_path / "gsm8k.jsonl", [{"id": "1", "question": "Tom has 3 apples."}, "",
                                           {"id": "2", "question": "Ann has 4 pears."}])
    items = load_benchmark_items([str(tmp_path / "a.parquet"), str(tmp_path / "*.jsonl")],
                                 "id", ["question"])
    assert items.benchmarks == ["mmlu", "mmlu", "gsm8k", "gsm8k"]
    assert items.rows == [0, 1, 0, 1]
    assert items.texts[2:] == ["Tom has 3 apples.", "Ann has 4 pears."]


def test_same_id_in_two_benchmarks_is_two_items(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"id": "1", "benchmark": "x", "text": "a b"},
                                          {"id": "1", "benchmark": "y", "text": "c d"}])
    assert load_benchmark_items([str(tmp_path / "a.parquet")], "id", ["text"]).ids == ["1", "1"]


@pytest.mark.parametrize("rows, match", [
    ([{"id": "1", "text": "a"}, {"id": "1", "text": "b"}],
     r"b\.parquet row 1: duplicate id '1' in benchmark 'b' \(first at .*b\.parquet row 0\)"),
    ([{"id": "1", "text": "a"}, {"id": "2", "text": "  "}],
     r"b\.parquet row 1: item '2' has no text"),
    ([{"id": "1", "text": "a"}, {"id": None, "text": "b"}],
     r"b\.parquet row 1: id \('id'\) is null"),
    ([{"id": "1", "body": "a"}], r"b\.parquet: no column 'text' \(columns: id, body\)"),
])
def test_bad_parquet_names_file_and_row(tmp_path, rows, match):
    write_parquet(tmp_path / "b.parquet", rows)
    with pytest.raises(BenchmarkFileError, match=match):
        load_benchmark_items([str(tmp_path / "b.parquet")], "id", ["text"])


def test_duplicate_across_files_names_both(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"id": "1", "benchmark": "g", "text": "a"}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "benchmark": "g", "text": "b"}])
    with pytest.raises(BenchmarkFileError, match=r"b\.jsonl row 0: line 1: duplicate id '1'"
                       r".*a\.parquet row 0"):
        load_benchmark_items([str(tmp_path / "*")], "id", ["text"])


def test_bad_jsonl_names_file_row_and_line(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "text": "a"}, "", "{not json"])
    with pytest.raises(BenchmarkFileError, match=r"b\.jsonl row 1: line 3: invalid JSON"):
        load_benchmark_items([str(tmp_path / "b.jsonl")], "id", ["text"])
    write_jsonl(tmp_path / "c.jsonl", [{"id": "1", "benchmark": None, "text": "a"}])
    with pytest.raises(BenchmarkFileError, match=r"c\.jsonl row 0: line 1: benchmark"):
        load_benchmark_items([str(tmp_path / "c.jsonl")], "id", ["text"])


def test_missing_files_and_unknown_types(tmp_path):
    with pytest.raises(BenchmarkFileError, match=r"'.*nope\*\.parquet' matches no file"):
        load_benchmark_items([str(tmp_path / "nope*.parquet")], "id", ["text"])
    with pytest.raises(BenchmarkFileError, match=r"'.*x\.parquet' does not exist"):
        load_benchmark_items([str(tmp_path / "x.parquet")], "id", ["text"])
    (tmp_path / "x.csv").write_text("id,text\n1,a\n")
    with pytest.raises(BenchmarkFileError, match=r"x\.csv: unknown benchmark file type"):
        load_benchmark_items([str(tmp_path / "x.csv")], "id", ["text"])
    (tmp_path / "y.parquet").write_text("not parquet")
    with pytest.raises(BenchmarkFileError, match=r"y\.parquet: not a readable Parquet"):
        load_benchmark_items([str(tmp_path / "y.parquet")], "id", ["text"])


def test_load_is_cached_until_the_file_changes(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", ROWS)
    first = load_benchmark_items([str(path)], "id", ["question"])
    assert load_benchmark_items([str(path)], "id", ["question"]) is first
    write_parquet(path, ROWS[:1])
    os.utime(path, ns=(1, 1))
    assert load_benchmark_items([str(path)], "id", ["question"]).ids == ["q1"]


def test_params_defaults_and_required_benchmarks():
    p = DecontamParams(benchmarks=["b.parquet"])
    assert (p.id_column, p.text_columns, p.benchmark_column, p.action) == (
        "id", ["text"], "benchmark", "drop")
    with pytest.raises(ValueError):
        DecontamParams(benchmarks=[])
