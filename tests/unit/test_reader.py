"""Bad input: a clear error naming the file (and row), or a quarantine with a reason."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines import columns as C
from pipelines.errors import InputError
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import write_jsonl, write_parquet


def read_all(pattern: str, max_doc_bytes: int = 1000) -> pa.Table:
    tables = []
    for shard in discover(pattern, "auto", "text", "id"):
        tables.extend(read_shard(shard, "text", "id", max_doc_bytes, batch_rows=2))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def quarantined(table: pa.Table) -> dict[str, tuple[str, str]]:
    gone = table.filter(pc.is_valid(table[C.DROP_STEP]))
    return {i: (r, d) for i, r, d in zip(gone["id"].to_pylist(), gone[C.REASON].to_pylist(),
                                          gone[C.DETAIL].to_pylist(), strict=True)}


def test_not_parquet_names_the_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("this is not parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        discover(str(tmp_path / "*.parquet"), "auto", "text", "id")


def test_missing_text_column_names_file_and_columns(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"id": "1", "body": "x"}])
    with pytest.raises(InputError, match=r"a\.parquet: no text column 'text'.*body"):
        discover(str(tmp_path / "*.parquet"), "auto", "text", "id")


def test_non_string_text_column_is_an_error(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"id": "1", "text": 5}])
    with pytest.raises(InputError, match="has type int64, expected string"):
        discover(str(tmp_path / "*.parquet"), "auto", "text", "id")


def test_no_match_is_an_error(tmp_path):
    with pytest.raises(InputError, match="matches no files"):
        discover(str(tmp_path / "*.parquet"), "auto", "text", "id")


def test_null_text_and_null_id_are_quarantined_with_row(tmp_path):
    write_parquet(tmp_path / "a.parquet", [
        {"id": "a", "text": "fine"}, {"id": "b", "text": None}, {"id": None, "text": "x"}])
    table = read_all(str(tmp_path / "*.parquet"))
    assert table.num_rows == 3
    q = quarantined(table)
    assert q["b"] == ("null_text", "a.parquet row 1: text is null")
    assert q["a.parquet:2"][0] == "null_id"  # a generated id stands in for the null one


def test_empty_shard_gives_no_rows_and_no_error(tmp_path):
    write_parquet(tmp_path / "e.parquet", [], schema=pa.schema([("id", pa.string()),
                                                                ("text", pa.string())]))
    assert read_all(str(tmp_path / "*.parquet")).num_rows == 0


def test_ids_are_generated_stably_when_absent(tmp_path):
    write_parquet(tmp_path / "sub" / "a.parquet", [{"text": "x"}, {"text": "y"}])
    write_parquet(tmp_path / "sub2" / "a.parquet", [{"text": "z"}])
    table = read_all(str(tmp_path / "*" / "*.parquet"))
    assert table["id"].to_pylist() == ["sub/a.parquet:0", "sub/a.parquet:1", "sub2/a.parquet:0"]


def test_jsonl_bad_lines_are_quarantined_with_line_numbers(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "ok", "text": "good"},
        "{not json",
        b'{"id": "latin", "text": "caf\xe9"}',
        {"id": "num", "text": 42},
        "[1, 2]",
        {"id": "nul", "text": None},
    ])
    table = read_all(str(tmp_path / "*.jsonl"))
    assert table.num_rows == 6
    q = quarantined(table)
    assert q["a.jsonl:1"] == ("invalid_json", "a.jsonl row 1: line 2: Expecting property name "
                                              "enclosed in double quotes at column 2")
    assert q["a.jsonl:2"][0] == "invalid_utf8" and "line 3" in q["a.jsonl:2"][1]
    assert q["num"] == ("non_string_text", "a.jsonl row 3: line 4: text is a JSON int")
    assert q["a.jsonl:4"][0] == "not_an_object"
    assert q["nul"][0] == "null_text"
    assert "ok" not in q


def test_huge_document_is_quarantined_not_loaded_onwards(tmp_path):
    big = "word " * 10_000_000  # 50 MB
    write_parquet(tmp_path / "a.parquet", [{"id": "big", "text": big}, {"id": "s", "text": "s"}])
    table = read_all(str(tmp_path / "*.parquet"), max_doc_bytes=8_000_000)
    q = quarantined(table)
    assert q["big"] == ("too_large", "a.parquet row 0: 50000000 bytes > max_doc_bytes=8000000")
    assert table.filter(pc.equal(table["id"], "big"))["text"].to_pylist() == [None]


def test_invalid_utf8_inside_parquet_is_quarantined(tmp_path):
    path = tmp_path / "a.parquet"
    raw = pa.array([b"good", b"bad \xff"], pa.binary())
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["g", "b"], "text": raw.view(pa.string())}), path)
    q = quarantined(read_all(str(tmp_path / "*.parquet")))
    assert q == {"b": ("invalid_utf8", "a.parquet row 1: text is not valid UTF-8")}


def test_shard_changed_during_run_is_detected(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "a"}])
    (shard,) = discover(str(path), "auto", "text", "id")
    write_jsonl(path, [{"id": "1", "text": "a"}, {"id": "2", "text": "b"}])
    with pytest.raises(InputError, match="read 2 rows but the shard declares 1"):
        list(read_shard(shard, "text", "id", 100, 10))
