"""select.jest (the recipe step) in this process: super-batches from input order and from a
seeded shuffle, each super-batch's selection against the selector library called directly,
the partial last super-batch, signals, independence from the batching, and the params'
checks (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from curate.select import jest as selector
from operators.base import Context
from operators.embed.embed import vector_array
from operators.select.jest import Jest, JestParams, sub_batch_shape
from operators.select.jest_encoders import SourceParams, check_head, load_head, save_head
from pipelines import columns as C
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover

COLUMNS = {"learner": SourceParams(columns=("l_left", "l_right")),
           "reference": SourceParams(columns=("r_left", "r_right"))}


def pairs_table(n: int = 200, d: int = 16, seed: int = 0) -> pa.Table:
    """n pairs in topics: the reference tells pairs apart, the learner sees mostly the topic
    (the shape of tests/unit/test_jest.py's pool), as four vector columns; a third of the
    pairs are mis-paired for both models."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 8, n)
    centre = rng.standard_normal((8, d)) * 2
    own = rng.standard_normal((n, d))
    left, right = centre[topic] + own, centre[topic] + own + 0.3 * rng.standard_normal((n, d))
    blur = rng.uniform(0.1, 1.0, 8)[topic][:, None]
    l_left, l_right = centre[topic] + blur * own, centre[topic] + blur * own \
        + rng.standard_normal((n, d))
    noisy = rng.random(n) < 1 / 3
    swap = rng.permutation(n)
    right[noisy], l_right[noisy] = right[swap][noisy], l_right[swap][noisy]
    f32 = np.float32
    return pa.table({"id": [f"r{i}" for i in range(n)], "text": [f"pair {i}" for i in range(n)],
                     "prompt": [f"q {i}" for i in range(n)], "answer": [f"a {i}" for i in range(n)],
                     "l_left": vector_array(l_left.astype(f32)),
                     "l_right": vector_array(l_right.astype(f32)),
                     "r_left": vector_array(left.astype(f32)),
                     "r_right": vector_array(right.astype(f32))})


@pytest.fixture
def pairs_file(tmp_path) -> str:
    path = tmp_path / "pairs.parquet"
    pq.write_table(pairs_table(), path)
    return str(path)


def run(path: str, batch_rows: int = 32, metrics: dict | None = None, seed: int = 0,
        **params) -> pa.Table:
    batches = [b for s in discover(path, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, batch_rows)]
    op = Jest(JestParams(**{"super_batch": 64, "filter_ratio": 0.75, "chunks": 4, **COLUMNS,
                            **params}), Context(seed=seed))
    return pa.concat_tables(run_operators(batches, [op], metrics=metrics)).sort_by(C.ORDER)


def signal(table: pa.Table, key: str) -> np.ndarray:
    return table[C.signal_column(1, key)].to_numpy(zero_copy_only=False)


def vectors(table: pa.Table, column: str) -> np.ndarray:
    col = table[column].combine_chunks()
    return col.values.to_numpy().reshape(len(col), -1)


def test_each_super_batch_is_the_selectors_draw(pairs_file):
    """Consecutive rows in input order form the super-batches; each one's chosen rows and
    chunks are what curate.select.jest draws on it with the generator (seed, index)."""
    metrics: dict = {}
    out = run(pairs_file, metrics=metrics, seed=7)
    table = pq.read_table(pairs_file)
    batch = signal(out, "super_batch")
    np.testing.assert_array_equal(batch, np.arange(200) // 64)
    for k in range(4):
        rows = slice(64 * k, min(64 * (k + 1), 200))
        part = table.slice(rows.start, rows.stop - rows.start)
        s = selector.score_matrix(
            selector.pair_losses(vectors(part, "l_left"), vectors(part, "l_right")),
            selector.pair_losses(vectors(part, "r_left"), vectors(part, "r_right")))
        chunks, size = sub_batch_shape(part.num_rows, 64, 0.75, 4)
        drawn = selector.sample_chunks(s, chunks, size, np.random.default_rng([7, k]))
        want_chunk = np.full(part.num_rows, np.nan)
        want_chunk[drawn] = np.arange(len(drawn)) // size
        np.testing.assert_array_equal(signal(out, "chunk")[rows], want_chunk)
        np.testing.assert_allclose(signal(out, "learnability")[rows], np.diagonal(s), rtol=1e-6)
        np.testing.assert_allclose(signal(out, "self_score")[rows], np.diagonal(s), rtol=1e-6)
    chosen = signal(out, "chosen") == 1
    assert chosen.sum() == 3 * 16 + 2  # the last 8 rows keep max(1, floor(8 x 0.25)) = 2
    reasons = out[C.REASON].to_pylist()
    assert all((r is None) == c for r, c in zip(reasons, chosen, strict=True))
    assert set(reasons) == {None, "jest_not_selected"}
    detail = out[C.DETAIL].to_pylist()[int(np.flatnonzero(~chosen)[0])]
    assert detail.startswith("super_batch=0 kept 16/64 learnability=")
    fig = metrics[1]
    assert (fig["super_batches"], fig["sub_batch"], fig["partial_last_rows"], fig["chosen"]) \
        == (4, 16, 8, 50)
    learn = signal(out, "learnability")
    assert fig["learnability_mean_chosen"] == pytest.approx(learn[chosen].mean(), abs=1e-5)
    assert fig["learnability_mean_chosen"] > fig["learnability_mean_all"]


def test_the_batching_does_not_change_the_selection(pairs_file):
    want = run(pairs_file, batch_rows=200)
    for rows in (7, 64):
        got = run(pairs_file, batch_rows=rows)
        for col in (C.REASON, C.DETAIL, C.signal_column(1, "chunk")):
            assert got[col].equals(want[col])


def test_a_seeded_shuffle_forms_full_super_batches_of_scattered_rows(pairs_file):
    out = run(pairs_file, shuffle=True, seed=3)
    batch = signal(out, "super_batch")
    assert sorted(np.bincount(batch.astype(int)).tolist()) == [8, 64, 64, 64]
    assert not np.array_equal(batch, np.arange(200) // 64)  # not input order
    again = run(pairs_file, shuffle=True, seed=3, batch_rows=50)
    assert again[C.signal_column(1, "chunk")].equals(out[C.signal_column(1, "chunk")])
    other = signal(run(pairs_file, shuffle=True, seed=4), "super_batch")
    assert not np.array_equal(other, batch)


def test_annotate_keeps_every_row_and_null_pairs_are_dropped(tmp_path):
    table = pairs_table(80)
    prompt = table["prompt"].to_pylist()
    prompt[5] = None
    path = tmp_path / "p.parquet"
    pq.write_table(table.set_column(2, "prompt", pa.array(prompt)), path)
    # The text columns are read (and null pairs dropped) only when a model embeds them;
    # here the learner is columns and the reference a stand-in model source.
    out = run(str(path), action="annotate")
    assert out[C.REASON].null_count == 80
    assert np.nansum(signal(out, "chosen")) == 16 + 4  # 64 -> 16, the last 16 -> 4
    op = Jest(JestParams(learner=COLUMNS["learner"]), Context())
    pairs = op.pairs(pq.read_table(path).append_column(C.ORDER, pa.array(np.arange(80))))
    assert pairs.reason.to_pylist()[5] == "jest_null_pair"
    assert pairs.detail.to_pylist()[5] == "prompt is null"
    assert pairs.reason.null_count == 79


@pytest.mark.parametrize(("n", "want"), [(64, (4, 4)), (8, (2, 1)), (3, (1, 1)),
                                         (40, (4, 2)), (61, (4, 3))])
def test_partial_last_super_batch_shape(n, want):
    assert sub_batch_shape(n, 64, 0.75, 4) == want


@pytest.mark.parametrize(("params", "message"), [
    ({"filter_ratio": 1.0}, "less than 1"),
    ({"filter_ratio": 0.0}, "greater than 0"),
    ({"super_batch": 100, "filter_ratio": 0.8, "chunks": 16}, "cannot be cut into 16"),
    ({"super_batch": 10, "filter_ratio": 0.75}, "not a whole number"),
    ({"left_column": "answer"}, "a pair needs two columns"),
    ({"learner": {"columns": ["a", "b"], "backend": "onnx"}}, "either `columns` or a model"),
])
def test_bad_params(params, message):
    with pytest.raises(ValidationError, match=message):
        JestParams(**params)


def test_same_frozen_model_for_both_is_refused():
    same = SourceParams(backend="torch")
    with pytest.raises(ValueError, match="learnability is zero for every pair"):
        Jest(JestParams(learner=same, reference=same), Context())
    Jest(JestParams(learner=same, reference=same, score="easy_reference"), Context())


def test_reads_both_text_columns_and_the_vector_columns():
    op = Jest(JestParams(learner=COLUMNS["learner"]), Context())
    assert {"prompt", "answer", "l_left", "l_right"} <= set(op.reads())
    only_vectors = Jest(JestParams(**COLUMNS), Context())
    assert "prompt" not in only_vectors.reads()


def test_head_checkpoints_round_trip_and_are_checked(tmp_path):
    w = np.eye(384, 8, dtype=np.float32)
    path = save_head(tmp_path / "h.npz", w, 2 * w, 7.5, -3.0, {"backend": "torch"})
    head = load_head(path)
    assert (head.input_dim, head.scale, head.bias) == (384, 7.5, -3.0)
    np.testing.assert_array_equal(head.right_weight, 2 * w)
    left, right = head.apply(np.ones((2, 384), np.float32), np.ones((2, 384), np.float32))
    assert left.shape == right.shape == (2, 8)
    check_head(SourceParams(backend="torch", head=str(path)), "reference")
    with pytest.raises(ValueError, match="trained on 'torch' embeddings"):
        check_head(SourceParams(backend="onnx", head=str(path)), "reference")
    small = save_head(tmp_path / "s.npz", w[:16], w[:16], 10.0, -10.0, {"backend": "torch"})
    with pytest.raises(ValueError, match="takes 16-d embeddings but .* gives 384-d"):
        check_head(SourceParams(backend="torch", head=str(small)), "learner")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a head checkpoint"):
        load_head(tmp_path / "bad.npz")


def test_vector_columns_of_different_sizes_are_an_error(tmp_path):
    table = pairs_table(64)
    short = vector_array(np.ones((64, 3), np.float32))
    path = Path(tmp_path) / "p.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("l_right"), "l_right", short),
                   path)
    with pytest.raises(ValueError, match="differ in size"):
        run(str(path))


def test_one_vector_pair_for_both_models_with_a_head_on_the_reference(pairs_file, tmp_path):
    """The same columns may feed both models (a head makes them differ); the id column may
    be a text column too."""
    head = save_head(tmp_path / "h.npz", 2 * np.eye(16, dtype=np.float32),
                     np.eye(16, dtype=np.float32), 20.0, -5.0, {"backend": "torch"})
    out = run(pairs_file, learner=SourceParams(columns=("r_left", "r_right")),
              reference=SourceParams(columns=("r_left", "r_right"), head=str(head)))
    assert np.nansum(signal(out, "chosen")) == 50


def test_a_model_source_never_borrows_from_a_column_source(monkeypatch):
    """The defaults of a column source (model None, backend torch) equal a torch source's
    model fields; the model source must still load its own model, and share only a
    loaded one."""
    from operators.embed import backends
    from operators.select.jest_encoders import PairEncoder

    loads = []
    monkeypatch.setattr(backends, "load_encoder",
                        lambda *a, **k: loads.append((a, k)) or object())
    columns = PairEncoder(SourceParams(columns=("a", "b")), threads=1)
    assert columns.encoder is None and not loads
    own = PairEncoder(SourceParams(backend="torch"), 1, shared=columns)
    assert own.encoder is not None and len(loads) == 1
    borrowed = PairEncoder(SourceParams(backend="torch"), 1, shared=own)
    assert borrowed.encoder is own.encoder and len(loads) == 1
    other = PairEncoder(SourceParams(backend="static"), 1, shared=own)
    assert other.encoder is not own.encoder and len(loads) == 2


def test_rows_without_the_second_column_are_a_clear_error():
    """A JSONL input's columns are only known once read: the message names the param."""
    op = Jest(JestParams(), Context())
    rows = pa.table({"id": ["a"], "prompt": ["q"], C.ORDER: pa.array([0], pa.int64())})
    with pytest.raises(ValueError, match=r"no column 'answer' \(right_column\); they have: "
                                         r"id, prompt"):
        op.pairs(rows)
