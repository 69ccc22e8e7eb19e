"""decontam.embedding in this process: its stages over several batches with a stand-in
encoder (hashed bags of words, so a span holding an item's words is close to it), the
sibling calibration rejecting a different item of the same task, annotate, metrics, bad
input; and one small run with the real model (torch) on GSM8K items."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from operators.base import Context
from operators.decontam.benchmark_sets import BenchmarkFileError
from operators.decontam.embedding import EmbeddingDecontam, EmbeddingDecontamParams
from pipelines import columns as C
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import SAMPLES, write_parquet

DIM = 512


class HashedWords:
    """Stand-in encoder: a unit bag of hashed lower-cased words, 512-d."""

    backend, dim, model_id, max_tokens = "hashed", DIM, "hashed-words", 512

    def __init__(self) -> None:
        self.texts = 0

    def encode(self, texts, batch_size):
        self.texts += len(texts)
        out = np.zeros((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            for w in text.lower().split():
                out[i, zlib.crc32(w.encode()) % DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def task_item(rng: np.random.Generator, k: int) -> str:
    """An item of one templated task: a shared instruction, then its own words."""
    own = " ".join(f"t{k}x{j}w{int(v)}" for j, v in enumerate(rng.integers(0, 50, 24)))
    return f"Solve the problem and give the final answer. Problem: {own} Answer: {k}"


def filler(rng: np.random.Generator, n: int) -> str:
    return " ".join(f"f{int(v)}" for v in rng.integers(0, 5000, n))


@pytest.fixture
def corpus(tmp_path):
    """40 items of one task (30 in the benchmark file, 10 held out); 60 documents: 15 with
    an indexed item pasted in (5 of them reworded: a third of its own words replaced), 10
    with a held-out item (a near miss: same task, different item), 35 clean."""
    rng = np.random.default_rng(0)
    items = [task_item(rng, k) for k in range(40)]
    write_parquet(tmp_path / "bench" / "task.parquet",
                  [{"id": f"q{k}", "benchmark": "task", "text": items[k]} for k in range(30)])
    rows, truth = [], {}
    for d in range(60):
        text = filler(rng, int(rng.integers(80, 400)))
        if d < 15 or 15 <= d < 25:
            k = d if d < 15 else 30 + (d - 15)
            item = items[k]
            if d < 5:  # reworded: every third own word replaced
                words = item.split()
                item = " ".join(f"new{j}" if j % 3 == 0 and "x" in w else w
                                for j, w in enumerate(words))
            words = text.split()
            at = int(rng.integers(0, len(words)))
            text = " ".join(words[:at]) + "\n\n" + item + "\n\n" + " ".join(words[at:])
            truth[f"d{d}"] = (f"q{k}" if d < 15 else None, text.index(item),
                              text.index(item) + len(item))
        rows.append({"id": f"d{d}", "text": text})
    write_parquet(tmp_path / "in" / "part-0.parquet", rows)
    return tmp_path, truth


def make_op(root, **params) -> EmbeddingDecontam:
    op = EmbeddingDecontam(EmbeddingDecontamParams(
        benchmarks=[str(root / "bench" / "*.parquet")], **params), Context())
    op._encoder = HashedWords()
    return op


def run(root, op, batch_rows: int = 7, metrics: dict | None = None) -> pa.Table:
    batches = [b for s in discover(str(root / "in" / "*.parquet"), "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, batch_rows)]
    return pa.concat_tables(run_operators(batches, [op], metrics=metrics)).sort_by(C.ORDER)


def signals(table: pa.Table, key: str) -> list:
    return table[C.signal_column(1, key)].to_pylist()


def test_leaked_items_are_flagged_with_item_and_span_and_near_misses_are_not(corpus):
    root, truth = corpus
    metrics: dict = {}
    out = run(root, make_op(root), metrics=metrics)
    ids = out["id"].to_pylist()
    matched = dict(zip(ids, signals(out, "matched_id"), strict=True))
    reasons = dict(zip(ids, out[C.REASON].to_pylist(), strict=True))
    for doc, (item, _, _) in truth.items():
        assert matched[doc] == item, doc  # leaked: its item; near miss (None): not flagged
    clean = [d for d in ids if d not in truth]
    assert all(matched[d] is None and reasons[d] is None for d in clean)
    assert {reasons[d] for d, (item, _, _) in truth.items() if item} == {"contaminated"}
    starts = dict(zip(ids, signals(out, "span_start"), strict=True))
    ends = dict(zip(ids, signals(out, "span_end"), strict=True))
    for doc, (item, a, b) in truth.items():
        if item:  # the matching span overlaps the planted text
            assert starts[doc] < b and ends[doc] > a, doc
    row = ids.index("d7")
    assert signals(out, "method")[row] == "embedding"
    assert signals(out, "benchmark")[row] == "task"
    assert signals(out, "score")[row] >= signals(out, "threshold")[row]
    assert out[C.DETAIL][row].as_py().startswith("benchmark=task item=q7 score=")
    figures = metrics[1]
    assert figures["items"] == 30 and figures["dim"] == DIM and figures["flagged"] == 15
    assert figures["vectors"] == 90 and figures["views"] == {"item": 30, "head": 30, "tail": 30}
    assert figures["index_bytes"] == 90 * DIM * 4 and figures["docs"] == 60
    assert figures["spans_embedded"] > 60
    assert 0 < figures["sibling_cosine"]["median"] < figures["threshold"]["median"]


def test_without_sibling_calibration_near_misses_would_be_flagged(corpus):
    """The same run with the margin over siblings at 0 and a low floor: the template's
    shared words put held-out items of the task above threshold. This is what the
    calibration prevents (the default run above flags none of them)."""
    root, truth = corpus
    out = run(root, make_op(root, margin=0.0, min_score=0.0, sibling_floor=0.0,
                             item_halves=False))
    matched = dict(zip(out["id"].to_pylist(), signals(out, "matched_id"), strict=True))
    near = [d for d, (item, _, _) in truth.items() if item is None]
    assert sum(matched[d] is not None for d in near) >= len(near) // 2


def test_batches_do_not_change_decisions_and_annotate_keeps_rows(corpus):
    root, _ = corpus
    small = run(root, make_op(root), batch_rows=3)
    large = run(root, make_op(root), batch_rows=100)
    keep = ["id", C.REASON, C.DETAIL, *[c for c in small.column_names if c.startswith("_s1:")]]
    assert small.select(keep).to_pydict() == large.select(keep).to_pydict()
    kept = run(root, make_op(root, action="annotate"))
    assert kept[C.REASON].null_count == kept.num_rows
    assert signals(kept, "matched_id") == signals(small, "matched_id")


def test_null_and_empty_texts_are_kept_unflagged(tmp_path):
    write_parquet(tmp_path / "bench" / "b.parquet", [{"id": "1", "text": "alpha beta gamma"}])
    op = make_op(tmp_path)
    index = op.fit(pa.table({"text": ["x"]}))
    rows = pa.table({C.ORDER: pa.array([0, 1, 2], pa.int64()),
                     "text": pa.array([None, "", "alpha beta gamma"], pa.string())})
    result = op.decide(op.match(rows, index).table, index)
    assert result.reason.to_pylist() == [None, None, "contaminated"]
    assert index.num_rows == 1  # three words: no halves indexed
    # No live rows reached the tally (an empty side table without columns): zero figures.
    empty = op.summary(pa.table({}), pa.table({}), index)
    assert empty.num_rows == 0
    figures = json.loads(empty.schema.metadata[b"curate.metrics"])
    assert figures["flagged"] == figures["spans_embedded"] == 0 and figures["items"] == 1


def test_bad_benchmark_files_and_model_fail_at_construction(tmp_path):
    with pytest.raises(BenchmarkFileError, match="does not exist"):
        EmbeddingDecontam(EmbeddingDecontamParams(benchmarks=[str(tmp_path / "none.jsonl")]))
    write_parquet(tmp_path / "b.parquet", [{"id": "1", "question": "q"}])
    with pytest.raises(BenchmarkFileError, match=r"b\.parquet: no column 'text'"):
        EmbeddingDecontam(EmbeddingDecontamParams(benchmarks=[str(tmp_path / "b.parquet")]))
    with pytest.raises(ValidationError, match="does not exist"):
        EmbeddingDecontamParams(benchmarks=["x"], model=str(tmp_path / "no-model"))
    with pytest.raises(ValidationError):
        EmbeddingDecontamParams(benchmarks=[])


# ---- the real model, a few documents --------------------------------------------------------

def test_real_model_flags_a_reworded_gsm8k_item_not_a_sibling(tmp_path):
    """torch MiniLM, 30 GSM8K items indexed: a WordNet-paraphrased planted item (from the
    sample kit) is flagged with its id; a held-out GSM8K item pasted into a document is not."""
    labels = pq.read_table(SAMPLES / "contamination_labels.parquet").to_pylist()
    para = next(r for r in labels if r["kind"] == "paraphrase")
    bench = pq.read_table(SAMPLES / "bench.parquet").to_pylist()
    others = [r for r in bench if r["bench_id"] != para["bench_id"]]
    indexed = [next(r for r in bench if r["bench_id"] == para["bench_id"]), *others[:29]]
    held_out = others[100]
    write_parquet(tmp_path / "bench" / "gsm8k.parquet",
                  [{"id": r["bench_id"], "benchmark": "gsm8k", "text": r["text"]}
                   for r in indexed])
    docs = pq.read_table(sorted((SAMPLES / "contaminated").glob("*.parquet"))[0]).to_pylist()
    host = next(d for d in docs if d["id"] not in {r["id"] for r in labels}
                and len(d["text"].split()) > 120)
    leaked = next(d for ds in (pq.read_table(p).to_pylist() for p in
                               sorted((SAMPLES / "contaminated").glob("*.parquet")))
                  for d in ds if d["id"] == para["id"])
    write_parquet(tmp_path / "in" / "part-0.parquet", [
        {"id": "leak", "text": leaked["text"]},
        {"id": "near", "text": host["text"] + "\n\n" + held_out["text"]},
        {"id": "clean", "text": host["text"]}])
    op = EmbeddingDecontam(EmbeddingDecontamParams(
        benchmarks=[str(tmp_path / "bench" / "*.parquet")], backend="torch"), Context())
    out = run(tmp_path, op)
    assert signals(out, "matched_id") == [para["bench_id"], None, None]
    start, end = signals(out, "span_start")[0], signals(out, "span_end")[0]
    assert start < para["char_end"] and end > para["char_start"]


def test_a_resumed_run_reuses_the_recorded_index(corpus, tmp_path):
    """The fitted table (vectors, thresholds, window in its metadata) is recorded under the
    run folder; a second run with the same store loads it instead of embedding the items
    again, and decides the same."""
    from pipelines.fitted import FitStore

    root, _ = corpus
    store = FitStore(tmp_path / "fitted")
    batches = [b for s in discover(str(root / "in" / "*.parquet"), "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, 16)]
    first_op, again_op = make_op(root), make_op(root)
    first = pa.concat_tables(run_operators(batches, [first_op], store=store))
    item_texts = first_op._encoder.texts
    again = pa.concat_tables(run_operators(batches, [again_op], store=store))
    assert sorted(p.name for p in (tmp_path / "fitted").iterdir()) == [
        "step-001-index.table.parquet", "step-001-items.table.parquet"]
    assert again_op._encoder.texts == item_texts - 90  # only the spans: no item embedded
    keep = ["id", C.REASON, C.DETAIL, *[c for c in first.column_names if c.startswith("_s1:")]]
    assert again.select(keep).to_pydict() == first.select(keep).to_pydict()
