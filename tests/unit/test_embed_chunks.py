"""embed `long_text: chunks`: windows over the whole text, pooled by word-piece weight."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from operators.base import Context
from operators.embed import Embed, EmbedParams, vectors_of
from operators.embed.chunks import Chunker, pool_windows
from operators.embed.models import MANIFEST, default_model_path
from pipelines.runner import run
from tests.conftest import SAMPLES, write_parquet

os.environ["HF_HUB_OFFLINE"] = "1"


def wordpieces():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def ids_of(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def long_texts() -> list[str]:
    """Sample-corpus documents of 300 to 1,000 word-pieces (2 to 4 windows of 254)."""
    tok = wordpieces()
    corpus = pq.read_table(SAMPLES / "corpus" / "part-00001.parquet", columns=["text"])
    picked = [t for t in corpus["text"].to_pylist()[:300]
              if t and 300 <= len(ids_of(tok, t)) <= 1000]
    assert len(picked) >= 4
    return picked[:4]


@pytest.fixture(scope="module")
def chunks_op():
    op = Embed(EmbedParams(long_text="chunks", batch_size=8), Context())
    op.setup()
    return op


@pytest.fixture(scope="module")
def head_op():
    op = Embed(EmbedParams(batch_size=8), Context())
    op.setup()
    return op


@pytest.mark.parametrize("chunk_tokens,overlap", [(16, 0), (40, 0), (254, 0), (32, 8)])
def test_windows_cover_the_whole_text_and_retokenize_to_their_word_pieces(
        long_texts, chunk_tokens, overlap):
    tok = wordpieces()
    chunker = Chunker(wordpieces(), chunk_tokens, max_chunks=10_000, overlap=overlap)
    w = chunker.windows(long_texts)
    for d, text in enumerate(long_texts):
        full = ids_of(tok, text)
        assert w.doc_tokens[d] == len(full)
        rows = np.flatnonzero(w.doc == d)
        pieces = [ids_of(tok, w.texts[r]) for r in rows]
        # Each window is exactly its word-pieces, within the window size.
        assert [len(p) for p in pieces] == w.tokens[rows].tolist()
        assert max(w.tokens[rows]) <= chunk_tokens
        if overlap == 0:  # consecutive windows tile the text
            assert sum(pieces, []) == full
        # Every window starts where a word does and past the previous start; it shares at
        # least `overlap` word-pieces with the previous one (rounded back to a word start).
        enc = tok.encode(text, add_special_tokens=False)
        spans = chunker.spans(enc.word_ids)
        assert spans[0][0] == 0 and spans[-1][1] == len(full)
        assert [full[a:b] for a, b in spans] == pieces
        for (a0, b0), (a1, _) in zip(spans, spans[1:], strict=False):
            assert a0 < a1 <= b0 - overlap and enc.word_ids[a1] != enc.word_ids[a1 - 1]


def test_max_chunks_keeps_evenly_spaced_windows_including_both_ends(long_texts):
    tok = wordpieces()
    every = Chunker(wordpieces(), 16, max_chunks=10_000).windows(long_texts)
    capped = Chunker(wordpieces(), 16, max_chunks=5).windows(long_texts)
    assert (every.per_doc > 5).all() and (capped.per_doc == 5).all()
    for d, text in enumerate(long_texts):
        all_windows = [every.texts[r] for r in np.flatnonzero(every.doc == d)]
        kept = [capped.texts[r] for r in np.flatnonzero(capped.doc == d)]
        want = np.round(np.linspace(0, len(all_windows) - 1, 5)).astype(int)
        assert kept == [all_windows[i] for i in want]
        full = ids_of(tok, text)
        assert full[:len(ids_of(tok, kept[0]))] == ids_of(tok, kept[0])  # the head
        assert full[-len(ids_of(tok, kept[-1])):] == ids_of(tok, kept[-1])  # the tail


def test_a_word_longer_than_a_window_is_cut_inside_it():
    text = "a " + "x" * 400 + " b"  # one word of many word-pieces
    w = Chunker(wordpieces(), 8, max_chunks=10_000).windows([text])
    assert w.tokens.sum() == w.doc_tokens[0] and w.tokens.max() <= 8


def test_pooled_vector_is_the_token_weighted_mean_of_the_window_vectors(chunks_op, long_texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    got = chunks_op.encode(long_texts)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    w = chunks_op._chunker.windows(long_texts)
    assert w.tokens.sum() == w.doc_tokens.sum()  # defaults: 254 per window, all covered
    for d in range(len(long_texts)):
        rows = np.flatnonzero(w.doc == d)
        assert len(rows) >= 2
        # Each window on its own (no batch-mates), weighted by its word-pieces by hand.
        vecs = np.stack([model.encode(w.texts[r], normalize_embeddings=True) for r in rows])
        mean = (vecs * w.tokens[rows, None]).sum(axis=0) / w.tokens[rows].sum()
        want = mean / np.linalg.norm(mean)
        assert got[d] @ want > 0.99999


def test_a_text_within_one_window_gets_exactly_its_head_vector(chunks_op, head_op, long_texts):
    short = "Compress a folder into a tar.gz archive."
    np.testing.assert_array_equal(chunks_op.encode([short]), head_op.encode([short]))
    # Among long batch-mates: as close as torch's padded batches ever are.
    mixed = chunks_op.encode(long_texts[:2] + [short])
    assert mixed[2] @ head_op.encode([short])[0] > 0.99999
    # Long texts differ from their head.
    head = head_op.encode(long_texts)
    assert ((chunks_op.encode(long_texts) * head).sum(axis=1) < 0.9999).all()


def test_chunked_vectors_are_deterministic_and_independent_of_batch_order(chunks_op, long_texts):
    a = chunks_op.encode(long_texts)
    np.testing.assert_array_equal(a, chunks_op.encode(long_texts))
    b = chunks_op.encode(long_texts[::-1])[::-1]
    assert (a * b).sum(axis=1).min() > 0.99999


def test_pool_windows_weights_by_word_pieces():
    from operators.embed.chunks import Windows

    v = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    w = Windows(["a", "b", "c"], np.array([0, 0, 1]), np.array([3, 1, 5]), np.array([4, 5]))
    out = pool_windows(v, w)
    np.testing.assert_allclose(out[0], np.array([3, 1]) / np.sqrt(10), rtol=1e-6)
    np.testing.assert_array_equal(out[1], v[2])  # one window: its vector unchanged


class TokenizingFakeEncoder:
    """Deterministic 4-d vectors from the real tokenizer, counting the texts it encodes."""

    backend, dim, model_id, max_tokens = "fake", 4, "fake-model", 10

    def __init__(self) -> None:
        self.texts = 0

    def wordpiece_tokenizer(self):
        return wordpieces()

    def encode(self, texts, batch_size):
        self.texts += len(texts)
        v = np.array([[len(t), t.count(" ") + 1, sum(map(ord, t)) % 97, 1.0] for t in texts],
                     np.float32).reshape(len(texts), 4)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def fake_op(**params) -> Embed:
    op = Embed(EmbedParams(**params), Context())
    op._encoder = TokenizingFakeEncoder()
    op.setup()
    return op


def test_cache_keys_differ_by_long_text_and_window_settings(tmp_path, long_texts):
    settings = [{}, {"long_text": "chunks"}, {"long_text": "chunks", "chunk_tokens": 4},
                {"long_text": "chunks", "max_chunks": 2},
                {"long_text": "chunks", "chunk_tokens": 4, "chunk_overlap": 1}]
    ops = [fake_op(cache_dir=str(tmp_path), **s) for s in settings]
    assert len({op._cache.namespace for op in ops}) == len(settings)
    for op in ops:
        op.encode(long_texts[:2])
    assert len(list(tmp_path.iterdir())) == len(settings)
    infos = [json.loads(p.read_text()) for p in tmp_path.glob("*/info.json")]
    assert sorted(i["long_text"] == "head" for i in infos) == [False] * 4 + [True]
    # Head vectors keep the namespace they had before chunking existed.
    from operators.embed.cache import EmbeddingCache

    before = EmbeddingCache(tmp_path, model_id="fake-model", backend="fake", max_tokens=10, dim=4)
    assert before.namespace == ops[0]._cache.namespace
    # A later chunks run reads its own vectors back bit for bit, encoding nothing.
    again = fake_op(cache_dir=str(tmp_path), long_text="chunks")
    out = again.encode(long_texts[:2])
    assert again._encoder.texts == 0 and again._cache.hits == 2
    np.testing.assert_array_equal(out, ops[1].encode(long_texts[:2]))


def test_fake_chunks_encode_every_window(long_texts):
    op = fake_op(long_text="chunks")
    op.encode(long_texts)
    w = op._chunker.windows(long_texts)
    assert op._chunker.chunk_tokens == 8  # max_tokens 10 less [CLS] and [SEP]
    assert op._encoder.texts == len(w.texts) and (w.per_doc <= 16).all()


def test_params_are_validated_with_helpful_messages():
    with pytest.raises(ValueError, match="at most 254"):
        Embed(EmbedParams(long_text="chunks", chunk_tokens=300), Context())
    with pytest.raises(ValueError, match="at most 62"):
        Embed(EmbedParams(long_text="chunks", chunk_tokens=100, max_tokens=64), Context())
    Embed(EmbedParams(long_text="chunks", chunk_tokens=254), Context())
    with pytest.raises(ValueError, match="only apply with long_text: chunks"):
        EmbedParams(chunk_tokens=100)
    with pytest.raises(ValueError, match="less than chunk_tokens"):
        EmbedParams(long_text="chunks", chunk_tokens=8, chunk_overlap=8)
    with pytest.raises(ValueError, match="must be less than the window of 8"):
        fake_op(long_text="chunks", chunk_overlap=8)
    text = ("name: t\ninput: {path: x.parquet}\noutput: {path: o}\nsteps:\n"
            "  - op: embed\n    params: {long_text: chunks, max_chunks: 4}\n")
    op = parse_recipe(text).operators[0]
    assert op.params.long_text == "chunks" and op.params.max_chunks == 4
    with pytest.raises(Exception, match="long_text"):
        parse_recipe(text.replace("chunks,", "tail,"))
    with pytest.raises(Exception, match="max_chunks"):
        parse_recipe(text.replace("max_chunks: 4", "max_chunks: 0"))


def test_static_chunks_embed_the_whole_untruncated_text(tmp_path, long_texts):
    """A token bag sees the whole text: its vector is the mean of all its token vectors."""
    from model2vec import StaticModel

    tok = wordpieces()
    rng = np.random.default_rng(0)
    table = rng.normal(size=(tok.get_vocab_size(), 16)).astype(np.float32)
    StaticModel(vectors=table, tokenizer=tok, normalize=True).save_pretrained(str(tmp_path))
    (tmp_path / MANIFEST).write_text(json.dumps({
        "backend": "static", "model_id": "tiny", "max_seq_length": 256, "dim": 16}))
    head = Embed(EmbedParams(backend="static", artefact_dir=str(tmp_path)), Context())
    whole = Embed(EmbedParams(backend="static", artefact_dir=str(tmp_path),
                              long_text="chunks"), Context())
    got = whole.encode(long_texts)
    for d, text in enumerate(long_texts):
        mean = table[ids_of(wordpieces(), text)].mean(axis=0)
        assert got[d] @ (mean / np.linalg.norm(mean)) > 0.99999
    assert ((got * head.encode(long_texts)).sum(axis=1) < 0.9999).all()
    assert whole._chunker is None and head.long_text_key() != whole.long_text_key()


def test_recipe_run_in_process_with_chunks(tmp_path, long_texts, chunks_op):
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(long_texts)]
    write_parquet(tmp_path / "in.parquet", rows)
    text = (f"name: t\ninput: {{path: '{tmp_path / 'in.parquet'}'}}\n"
            f"output: {{path: '{tmp_path / 'out'}'}}\nexecution: {{engine: inprocess}}\n"
            "steps:\n  - op: embed\n    params: {long_text: chunks, batch_size: 8}\n")
    loaded = parse_recipe(text)
    result = run(loaded.recipe.run_spec(text), loaded.operators)
    assert [r["rows_out"] for r in result.ops] == [4, 4]
    table = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "out").glob(
        "part-*.parquet")))
    assert table["id"].to_pylist() == [r["id"] for r in rows]
    got = vectors_of(table["embedding"])
    assert (got * chunks_op.encode(long_texts)).sum(axis=1).min() > 0.99999


def test_onnx_chunked_vectors_do_not_depend_on_batch_mates(tmp_path_factory, long_texts):
    """onnx runs one window per pass, so a pooled vector is a function of its text alone."""
    from operators.embed import prepare_backend

    artefact = prepare_backend(None, "onnx", tmp_path_factory.mktemp("onnx") / "onnx", threads=2)
    op = Embed(EmbedParams(backend="onnx", artefact_dir=str(artefact), long_text="chunks"),
               Context())
    alone = np.concatenate([op.encode([t]) for t in long_texts])
    np.testing.assert_array_equal(op.encode(long_texts[::-1])[::-1], alone)
