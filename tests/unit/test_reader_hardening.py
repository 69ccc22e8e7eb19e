"""Input hardening (issue 10, items 5 and 6): unencodable text, compressed JSONL, blank
lines and duplicate ids are quarantined or handled, never a crash or a silent loss."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines import columns as C
from pipelines import unique_ids
from pipelines.errors import InputError
from pipelines.inprocess import read_shards
from pipelines.shards import discover
from tests.conftest import write_jsonl, write_parquet
from tests.unit.test_reader import quarantined, read_all

SURROGATE_TEXT = rb'{"id": "s", "text": "a \ud800 b"}'


def user_rows(table: pa.Table) -> list[dict]:
    return table.select(["id", "text", C.REASON]).to_pylist()


# --- lone surrogates ---------------------------------------------------------------


def test_lone_surrogate_in_text_is_quarantined_not_a_crash(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "ok", "text": "fine"}, SURROGATE_TEXT,
                                       {"id": "ok2", "text": "also fine"}])
    table = read_all(str(tmp_path / "*.jsonl"))
    assert table.num_rows == 3
    q = quarantined(table)
    assert set(q) == {"s"}  # the id survives: only the text is bad
    reason, detail = q["s"]
    assert reason == "unencodable_text"
    assert detail.startswith("a.jsonl row 1: line 2: field 'text'")
    assert "surrogate" in detail and "\\ud800" in detail


def test_lone_surrogate_in_id_is_quarantined(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "ok", "text": "fine"},
                                       rb'{"id": "x\uDC00", "text": "fine"}'])
    q = quarantined(read_all(str(tmp_path / "*.jsonl")))
    # the id cannot be written, so a generated one stands in for it
    assert list(q) == ["a.jsonl:1"]
    reason, detail = q["a.jsonl:1"]
    assert reason == "unencodable_text"
    assert detail.startswith("a.jsonl row 1: line 2: field 'id'") and "\\udc00" in detail


def test_lone_surrogate_in_another_field_is_quarantined(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "ok", "text": "fine", "meta": {"tags": ["a", "b"]}},
        rb'{"id": "m", "text": "fine", "meta": {"tags": ["a", "\ud9ff"]}}',
        rb'{"id": "k", "text": "fine", "\udfff": 1}',
    ])
    q = quarantined(read_all(str(tmp_path / "*.jsonl")))
    assert q["m"][0] == "unencodable_text"
    assert q["m"][1].startswith("a.jsonl row 1: line 2: field 'meta.tags[1]'")
    assert q["k"][0] == "unencodable_text" and "field name" in q["k"][1]
    assert "ok" not in q


def test_lone_surrogate_in_a_file_without_ids_harms_no_other_row(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "fine"}, rb'{"text": "bad \ud800"}',
                                       {"text": "also fine"}])
    q = quarantined(read_all(str(tmp_path / "*.jsonl")))
    assert list(q) == ["a.jsonl:1"] and q["a.jsonl:1"][0] == "unencodable_text"


def test_valid_surrogate_pairs_pass_untouched(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [rb'{"id": "e", "text": "smile \ud83d\ude00"}',
                                       rb'{"id": "E", "text": "smile \uD83D\uDE00"}',
                                       rb'{"id": "b", "text": "a literal \\ud800"}',
                                       rb'{"id": "r", "text": "reversed \ude00\ud83d"}'])
    table = read_all(str(tmp_path / "*.jsonl"))
    assert list(quarantined(table)) == ["r"]  # a low surrogate first is no pair
    assert table["text"].to_pylist() == ["smile \U0001F600", "smile \U0001F600",
                                         "a literal \\ud800", None]


# --- compressed JSONL --------------------------------------------------------------

LINES = [{"id": "a", "text": "first"}, "{broken", {"id": "c", "text": None},
         {"id": "d", "text": "last"}]


def _compress(plain: Path, codec: str, suffix: str) -> Path:
    out = plain.parent.parent / codec / (plain.name + suffix)
    out.parent.mkdir()
    with pa.CompressedOutputStream(str(out), codec) as f:
        f.write(plain.read_bytes())
    return out


@pytest.mark.parametrize(("codec", "suffix"), [("gzip", ".gz"), ("zstd", ".zst")])
def test_compressed_jsonl_reads_like_the_plain_file(tmp_path, codec, suffix):
    plain = write_jsonl(tmp_path / "plain" / "a.jsonl", LINES)
    packed = _compress(plain, codec, suffix)
    want = read_all(str(plain))
    (shard,) = discover(str(packed), "auto", "text", "id")
    assert (shard.format, shard.rows, shard.compression) == ("jsonl", 4, codec)
    got = read_all(str(packed))
    assert pc.equal(got["text"], want["text"]).to_pylist() == [True, None, None, True]
    assert got[C.REASON].to_pylist() == want[C.REASON].to_pylist()
    assert got["id"].to_pylist()[0::2] == want["id"].to_pylist()[0::2]
    # declared format with a compressed name: the case (all lines were invalid_utf8)
    (declared,) = discover(str(packed), "jsonl", "text", "id")
    assert declared.rows == 4 and declared.compression == codec


def test_inner_extension_gives_the_format(tmp_path):
    for name in ("a.json.gz", "b.ndjson.zst", "c.jsonl.GZ"):
        path = tmp_path / name
        with pa.CompressedOutputStream(str(path), "zstd" if "zst" in name else "gzip") as f:
            f.write(b'{"id": "x", "text": "y"}\n')
    shards = discover(str(tmp_path / "*"), "auto", "text", "id")
    assert [(s.format, s.rows) for s in shards] == [("jsonl", 1)] * 3


def test_corrupt_gzip_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "bad.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 20)
    with pytest.raises(InputError, match=r"bad\.jsonl\.gz: .*gzip"):
        discover(str(tmp_path / "*.gz"), "auto", "text", "id")
    whole = gzip.compress(b'{"id": "1", "text": "t"}\n' * 500)
    (tmp_path / "bad.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"bad\.jsonl\.gz: "):
        discover(str(tmp_path / "*.gz"), "jsonl", "text", "id")


def test_compressed_jsonl_without_the_extension_is_recognised(tmp_path):
    plain = write_jsonl(tmp_path / "plain.jsonl", LINES)
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "a.jsonl").write_bytes(gzip.compress(plain.read_bytes()))
    (shard,) = discover(str(tmp_path / "packed" / "*"), "auto", "text", "id")
    assert (shard.rows, shard.compression) == (4, "gzip")
    got = read_all(str(tmp_path / "packed" / "*"))
    assert got[C.REASON].to_pylist() == read_all(str(plain))[C.REASON].to_pylist()


def test_gzipped_parquet_is_refused(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"id": "1", "text": "x"}])
    packed = gzip.compress((tmp_path / "a.parquet").read_bytes())
    (tmp_path / "a.parquet.gz").write_bytes(packed)
    for declared in ("auto", "parquet"):
        with pytest.raises(InputError, match=r"a\.parquet\.gz: .*Parquet.*compress"):
            discover(str(tmp_path / "*.gz"), declared, "text", "id")
    (tmp_path / "b" / "a.parquet").parent.mkdir()
    (tmp_path / "b" / "a.parquet").write_bytes(packed)
    with pytest.raises(InputError, match=r"a\.parquet: not a readable Parquet.*gzip-compressed"):
        discover(str(tmp_path / "b" / "*"), "auto", "text", "id")


# --- blank lines -------------------------------------------------------------------


def test_blank_lines_are_skipped_counted_and_lines_stay_physical(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "a", "text": "one"}\n\n   \n{"id": "b", "text": "two"}\r\n'
                     b'\t\r\n{broken\n{"id": "n", "text": null}\n \t')
    (shard,) = discover(str(path), "auto", "text", "id")
    assert (shard.rows, shard.blank_lines) == (4, 4)
    table = read_all(str(path))
    assert table.num_rows == 4
    assert table["id"].to_pylist() == ["a", "b", "a.jsonl:2", "n"]
    q = quarantined(table)
    assert q["a.jsonl:2"][1].startswith("a.jsonl row 2: line 6: ")
    assert q["n"] == ("null_text", "a.jsonl row 3: line 7: text is null")
    assert table[C.ORDER].to_pylist() == [0, 1, 2, 3]


def test_a_file_of_blank_lines_has_no_rows(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b"\n  \n\n")
    (tmp_path / "b.jsonl").write_bytes(b"")
    shards = discover(str(tmp_path / "*.jsonl"), "auto", "text", "id")
    assert [(s.rows, s.blank_lines) for s in shards] == [(0, 3), (0, 0)]
    assert not any(s.rows for s in shards)  # what the runner checks for "0 input rows"
    assert read_all(str(tmp_path / "*.jsonl")).num_rows == 0


# --- duplicate ids -----------------------------------------------------------------


def records(rows: list[tuple[int, int, str]], hashes: list[int] | None = None) -> pa.Table:
    shard, row, ids = zip(*rows, strict=True) if rows else ((), (), ())
    ids_arr = pa.array(ids, pa.string())
    h = np.array(hashes, np.uint64) if hashes is not None else unique_ids.id_hashes(ids_arr)
    return pa.table({"hash": pa.array(h, pa.uint64()), "shard": pa.array(shard, pa.int32()),
                     "row": pa.array(row, pa.int64()), "id": ids_arr})


def found(table: pa.Table) -> set[tuple]:
    return set(zip(table["shard"].to_pylist(), table["row"].to_pylist(),
                   table["first_shard"].to_pylist(), table["first_row"].to_pylist(),
                   strict=True))


def test_duplicate_ids_within_a_shard():
    got = unique_ids.find_duplicates(records([(0, 0, "x"), (0, 1, "y"), (0, 3, "x"),
                                              (0, 7, "x")]))
    assert found(got) == {(0, 3, 0, 0), (0, 7, 0, 0)}
    assert got["id"].to_pylist() == ["x", "x"]


def test_duplicate_ids_across_shards_keep_the_first_in_input_order():
    # records arrive in any order (a shuffle); the first by (shard, row) is kept
    got = unique_ids.find_duplicates(records([(2, 0, "x"), (1, 5, "x"), (0, 9, "z"),
                                              (1, 2, "x"), (3, 0, "z")]))
    assert found(got) == {(1, 5, 1, 2), (2, 0, 1, 2), (3, 0, 0, 9)}


def test_hash_collisions_do_not_drop_rows():
    same = [7, 7, 7, 7]
    got = unique_ids.find_duplicates(records([(0, 0, "a"), (0, 1, "b"), (1, 0, "c"),
                                              (1, 1, "b")], hashes=same))
    assert found(got) == {(1, 1, 0, 1)}
    assert unique_ids.find_duplicates(records([])).num_rows == 0


def test_duplicate_ids_are_quarantined_when_reading(tmp_path, monkeypatch):
    write_parquet(tmp_path / "a.parquet", [{"id": "x", "text": "1"}, {"id": "y", "text": "2"}])
    write_parquet(tmp_path / "b.parquet", [{"id": "q", "text": "3"}, {"id": "x", "text": "4"}])
    write_jsonl(tmp_path / "c.jsonl", [{"id": "j", "text": "5"}, "", {"id": "j", "text": "6"},
                                       {"id": "y", "text": "7"}, "{broken", {"text": "8"}])
    # every id hashes alike: only real equality may drop a row
    monkeypatch.setattr(unique_ids, "id_hashes", lambda ids: np.zeros(len(ids), np.uint64))
    shards = discover(str(tmp_path / "*"), "auto", "text", "id")
    table = pa.concat_tables(read_shards(shards, "text", "id", 1000, 2),
                             promote_options="permissive")
    assert table.num_rows == 9
    gone = table.filter(pc.equal(table[C.REASON], "duplicate_id"))
    assert gone[C.DETAIL].to_pylist() == [
        "b.parquet row 1: id 'x' already at a.parquet row 0",
        "c.jsonl row 1: line 3: id 'j' already at c.jsonl row 0 (line 1)",
        "c.jsonl row 2: line 4: id 'y' already at a.parquet row 1",
    ]
    assert gone["text"].to_pylist() == [None, None, None]
    kept = table.filter(pc.is_null(table[C.DROP_STEP]))
    assert kept["text"].to_pylist() == ["1", "2", "3", "5", "8"]


def test_generated_ids_skip_the_id_check(tmp_path):
    write_parquet(tmp_path / "a.parquet", [{"text": "1"}, {"text": "2"}])
    shards = discover(str(tmp_path / "*"), "auto", "text", "id")
    assert not shards[0].has_id
    assert unique_ids.duplicates_in_process(shards, "id").num_rows == 0


def test_in_process_read_records_the_id_check_only_where_the_ray_plan_does(tmp_path):
    # Ray's pre-pass runs (and reports duplicate_ids) only when some shard has input ids.
    from pipelines.inprocess import read_shards

    write_parquet(tmp_path / "gen" / "a.parquet", [{"text": "1"}, {"text": "2"}])
    metrics: dict = {}
    read_shards(discover(str(tmp_path / "gen" / "*"), "auto", "text", "id"), "text", "id",
                8_000_000, 10, metrics)
    assert metrics == {}
    write_parquet(tmp_path / "ids" / "a.parquet", [{"id": "x", "text": "1"},
                                                   {"id": "x", "text": "2"}])
    read_shards(discover(str(tmp_path / "ids" / "*"), "auto", "text", "id"), "text", "id",
                8_000_000, 10, metrics)
    assert metrics == {0: {"duplicate_ids": 1}}
