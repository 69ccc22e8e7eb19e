"""Maths of the first operators, on hand-made batches (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from operators.base import ORDER_COLUMN, Context
from operators.dedup.exact import (
    ExactDedup,
    ExactParams,
    duplicate_groups,
    first_of_each_group,
)
from operators.filter.length import LengthFilter, LengthParams
from operators.text.normalize import Normalize, NormalizeParams
from pipelines import columns as C
from pipelines.inprocess import run_operators


def batch(texts: list[str]) -> pa.Table:
    return pa.table({"id": pa.array([f"d{i}" for i in range(len(texts))], pa.string()),
                     "text": pa.array(texts, pa.string()),
                     ORDER_COLUMN: pa.array(np.arange(len(texts)), pa.int64())})


def carried_batch(texts: list[str]) -> pa.Table:
    """`batch` with the bookkeeping columns the reader adds (all rows live)."""
    n = len(texts)
    return batch(texts).append_column(C.SHARD, pa.array(np.zeros(n, np.int32))).append_column(
        C.DROP_STEP, pa.nulls(n, pa.int16())).append_column(
        C.REASON, pa.nulls(n, pa.string())).append_column(C.DETAIL, pa.nulls(n, pa.string()))


def test_normalize_nfc_and_whitespace():
    op = Normalize(NormalizeParams())
    res = op.process(batch(["Cafe\u0301  au\t lait \r\n\n\n\nnext ", "   "]))
    assert res.table["text"].to_pylist() == ["Caf\u00e9 au lait\n\nnext", ""]
    assert res.reason.to_pylist() == [None, "empty_text"]
    assert res.signals["chars_removed"].to_pylist()[0] > 0


def test_normalize_keeps_empty_when_asked():
    res = Normalize(NormalizeParams(drop_empty=False)).process(batch([" "]))
    assert res.reason.to_pylist() == [None]


def test_length_bounds_just_under_and_over():
    op = LengthFilter(LengthParams(min_chars=5, max_chars=10, min_words=2, max_words=3))
    texts = ["a bcd", "a bc", "a bcdefghi", "a bcdefghij", "abcdef", "a b c", "a b c d"]
    res = op.process(batch(texts))
    assert res.reason.to_pylist() == [None, "too_short", None, "too_long", "too_short", None,
                                      "too_long"]
    assert res.detail.to_pylist()[1] == "chars=4 < min_chars=5"
    assert res.detail.to_pylist()[4] == "words=1 < min_words=2"
    assert res.detail.to_pylist()[6] == "words=4 > max_words=3"
    assert res.signals["words"].to_pylist() == [2, 2, 2, 2, 1, 3, 4]


def test_first_of_each_group_matches_brute_force():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 20, 500).astype(np.uint64)
    order = rng.permutation(500).astype(np.int64)
    leader = first_of_each_group(keys, order)
    for i in range(500):
        same = np.flatnonzero(keys == keys[i])
        assert leader[i] == same[np.argmin(order[same])]


def run_exact(params: ExactParams, texts: list[str], batches: int = 1) -> pa.Table:
    """dedup.exact through all its stages in-process, over `batches` batches."""
    rows = carried_batch(texts)
    size = max(-(-rows.num_rows // batches), 1)
    parts = [rows.slice(i, size) for i in range(0, rows.num_rows, size)] or [rows]
    out = run_operators(parts, [ExactDedup(params, Context())])
    return pa.concat_tables(out).sort_by("_order")


def test_exact_dedup_keeps_first_in_input_order():
    texts = ["same text", "other", "same  text", "SAME TEXT", "same text"]
    for batches in (1, 2, 5):  # a group split across batches is still one group
        out = run_exact(ExactParams(), texts, batches)
        got = dict(zip(out["id"].to_pylist(), zip(out["_reason"].to_pylist(),
                                                  out["_detail"].to_pylist(), strict=True),
                       strict=True))
        assert got["d0"] == (None, None)
        assert got["d2"] == ("exact_duplicate", "d0")  # whitespace normalised
        assert got["d4"] == ("exact_duplicate", "d0")
        assert got["d3"] == (None, None)  # case-sensitive by default
        assert got["d1"] == (None, None)
        assert out["_s1:copies"].to_pylist() == [3, 1, 3, 1, 3]
        assert out.num_rows == 5


def test_exact_dedup_lowercase_option():
    out = run_exact(ExactParams(lowercase=True), ["Hello", "hello"])
    assert out["_reason"].to_pylist() == [None, "exact_duplicate"]


def test_duplicate_groups_lists_only_shared_hashes():
    records = pa.table({"_exact_key": pa.array([7, 9, 7, 5, 7], pa.uint64()),
                        "_order": pa.array([40, 10, 30, 20, 50], pa.int64())})
    g = duplicate_groups(records).sort_by("_order").to_pydict()
    assert g == {"_order": [30, 40, 50], "_exact_leader": [30, 30, 30],
                 "_exact_copies": [3, 3, 3]}


def test_operators_accept_an_empty_batch():
    empty = batch([])
    assert Normalize(NormalizeParams()).process(empty).table.num_rows == 0
    assert LengthFilter(LengthParams(min_words=2)).process(empty).table.num_rows == 0
    assert run_exact(ExactParams(), []).num_rows == 0
