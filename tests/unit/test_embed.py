"""embed: vectors, nulls, the Parquet cache, the column through the step wrapper and writer,
and the onnx / openvino / static backends (no Ray)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from operators.base import BatchResult, Context
from operators.embed import Embed, EmbedParams, prepare_backend, vector_array, vectors_of
from operators.embed.backend_openvino import OPENVINO_FILE, OPENVINO_INT8_FILE, PRECISIONS
from operators.embed.backends import load_encoder
from operators.embed.embed import default_threads
from operators.embed.models import MANIFEST, default_model_path
from pipelines import columns as C
from pipelines.inprocess import run_operators
from pipelines.shards import Shard
from pipelines.steps import apply_step
from pipelines.writer import ShardWriter, StepInfo

os.environ["HF_HUB_OFFLINE"] = "1"

TEXTS = [
    "List files in a directory, including hidden ones.",
    "The asyncio module provides infrastructure for writing concurrent code.",
    "Remove all stopped containers to free disk space.",
    "A dictionary maps hashable keys to arbitrary values.",
    "Compress a folder into a tar.gz archive.",
    "Regular expressions describe sets of strings.",
    "Show the current git branch and uncommitted changes.",
    "Exceptions propagate up the call stack until handled.",
    "Resize an image to half its width and height.",
    "The quick brown fox jumps over the lazy dog.",
]


def batch_of(texts: list[str | None], dead: int = 0) -> pa.Table:
    """A carried batch as the pipeline builds it; the last `dead` rows dropped at step 0."""
    n = len(texts)
    drop = [None] * (n - dead) + [0] * dead
    return pa.table({
        "id": pa.array([f"d{i}" for i in range(n)]),
        "text": pa.array(texts, pa.string()),
        C.ORDER: pa.array(np.arange(n, dtype=np.int64)),
        C.SHARD: pa.array(np.zeros(n, np.int32)),
        C.DROP_STEP: pa.array(drop, pa.int16()),
        C.REASON: pa.array([None] * (n - dead) + ["null_text"] * dead, pa.string()),
        C.DETAIL: pa.nulls(n, pa.string()),
    })


class FakeEncoder:
    """Deterministic 4-d vectors; counts calls, so cache hits are visible."""

    backend, dim, model_id, max_tokens = "fake", 4, "fake-model", 8

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, batch_size):
        self.calls += 1
        v = np.array([[len(t), t.count(" ") + 1, sum(map(ord, t)) % 97, 1.0] for t in texts],
                     np.float32).reshape(len(texts), 4)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def fake_op(**params) -> Embed:
    op = Embed(EmbedParams(**params), Context())
    op._encoder = FakeEncoder()
    return op


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def torch_op():
    op = Embed(EmbedParams(backend="torch", batch_size=4), Context())
    op.setup()
    return op


def test_torch_vectors_match_sentence_transformers_and_are_normalised(torch_op, reference):
    out = torch_op.process(batch_of(TEXTS)).table
    col = out["embedding"]
    assert col.type == pa.list_(pa.float32(), 384)  # fixed_size_list<float32>[384]
    v = vectors_of(col)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert (v * reference).sum(axis=1).min() > 0.9999


def test_null_text_gets_a_null_vector_and_others_are_unchanged(torch_op, reference):
    out = torch_op.process(batch_of([TEXTS[0], None, TEXTS[2]])).table
    col = out["embedding"].combine_chunks()
    assert col.is_null().to_pylist() == [False, True, False]
    v = vectors_of(col)
    assert (v[0] @ reference[0]) > 0.9999 and (v[2] @ reference[2]) > 0.9999
    assert not v[1].any()


def test_max_tokens_truncates_to_the_first_word_pieces():
    from tokenizers import Tokenizer

    op = Embed(EmbedParams(max_tokens=8), Context())
    long = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu " * 5
    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_truncation()
    # 8 word-pieces including [CLS] and [SEP]: the text's first 6 word-pieces.
    head = tok.decode(tok.encode(long).ids[1:7])
    a, b = vectors_of(op.process(batch_of([long, head])).table["embedding"])
    assert a @ b > 0.9999
    full = Embed(EmbedParams(), Context())
    assert vectors_of(full.process(batch_of([long])).table["embedding"])[0] @ a < 0.99


def test_cache_hit_returns_identical_vectors_without_encoding(tmp_path):
    first = fake_op(cache_dir=str(tmp_path))
    first.setup()
    out1 = vectors_of(first.process(batch_of(TEXTS)).table["embedding"])
    assert first._encoder.calls == 1 and len(first._cache) == len(TEXTS)
    assert list((tmp_path).glob("fake-*/part-*.parquet"))

    second = fake_op(cache_dir=str(tmp_path))  # a later run: new process state
    second.setup()
    out2 = vectors_of(second.process(batch_of(TEXTS[::-1] + ["a new text"])).table["embedding"])
    assert second._encoder.calls == 1  # only the one new text was encoded
    assert second._cache.hits == len(TEXTS) and second._cache.misses == 1
    np.testing.assert_array_equal(out2[: len(TEXTS)][::-1], out1)  # bit for bit


def test_cache_is_keyed_by_model_and_truncation(tmp_path):
    a = fake_op(cache_dir=str(tmp_path))
    a.setup()
    a.process(batch_of(TEXTS[:3]))
    b = fake_op(cache_dir=str(tmp_path))
    b._encoder.max_tokens = 4  # another truncation: another namespace
    b.setup()
    assert len(b._cache) == 0
    assert len(list(tmp_path.iterdir())) == 2


def test_real_cache_round_trip(tmp_path, torch_op):
    op = Embed(EmbedParams(cache_dir=str(tmp_path)), Context())
    v1 = vectors_of(op.process(batch_of(TEXTS[:3])).table["embedding"])
    again = Embed(EmbedParams(cache_dir=str(tmp_path)), Context())
    again.setup()
    v2 = vectors_of(again.process(batch_of(TEXTS[:3])).table["embedding"])
    assert again._cache.hits == 3
    np.testing.assert_array_equal(v1, v2)


def test_vector_column_survives_the_step_wrapper_with_dead_rows_and_the_writer(tmp_path):
    op = fake_op()
    carried = batch_of(TEXTS[:4] + [None, None], dead=2)
    out = apply_step(carried, op.process, op, 1, last_stage=True)
    assert out.num_rows == 6 and out["embedding"].type == pa.list_(pa.float32(), 4)
    assert out["embedding"].is_null().to_pylist() == [False] * 4 + [True] * 2
    # A later step keeps the column as is.
    again = apply_step(out, BatchResult.keep_all, op, 2, last_stage=True)
    np.testing.assert_array_equal(vectors_of(again["embedding"]), vectors_of(out["embedding"]))
    # The writer puts it in the output shards, typed.
    shard = Shard(index=0, path=str(tmp_path / "in.parquet"), label="in.parquet",
                  format="parquet", rows=6, has_id=True)
    steps = [StepInfo(0, "input.read", "input"), StepInfo(1, "embed", "embed"),
             StepInfo(2, "embed", "again")]
    writer = ShardWriter([shard], steps, "run", str(tmp_path / "run"), "id", 100, "zstd")
    writer(again)
    part = pq.read_table(next((tmp_path / "run" / "staging").glob("part-*.parquet")))
    assert part.column_names == ["id", "text", "embedding"]
    assert part["embedding"].type == pa.list_(pa.float32(), 4)
    np.testing.assert_array_equal(vectors_of(part["embedding"]),
                                  vectors_of(out["embedding"])[:4])


def test_vector_array_round_trip_with_nulls_and_slices():
    v = np.arange(12, dtype=np.float32).reshape(4, 3)
    arr = vector_array(v, np.array([False, True, False, False]))
    back = vectors_of(arr)
    assert back[1].tolist() == [0, 0, 0] and back[2].tolist() == [6, 7, 8]
    assert vectors_of(arr.slice(2))[0].tolist() == [6, 7, 8]


def test_params_validate_in_a_recipe():
    text = ("name: t\ninput: {path: x.parquet}\noutput: {path: o}\nsteps:\n"
            "  - op: embed\n    params: {backend: onnx, batch_size: 16, column: vec}\n")
    op = parse_recipe(text).operators[0]
    assert op.uses_actor and op.params.backend == "onnx" and op.params.column == "vec"
    with pytest.raises(Exception, match="backend"):
        parse_recipe(text.replace("onnx", "tensorflow"))
    ov = parse_recipe(text.replace("onnx", "openvino, precision: f32")).operators[0]
    assert ov.params.backend == "openvino" and ov.params.precision == "f32"
    with pytest.raises(Exception, match="precision"):
        parse_recipe(text.replace("onnx", "openvino, precision: int4"))
    with pytest.raises(ValueError, match="overwrite"):
        Embed(EmbedParams(column="text"), Context())


def test_hub_names_are_refused():
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        load_encoder("sentence-transformers/all-MiniLM-L6-v2", "torch")


@pytest.fixture(scope="module")
def onnx_artefact(tmp_path_factory):
    """Built from the packaged model, offline (~15-30 s on 2 cores)."""
    return prepare_backend(None, "onnx", tmp_path_factory.mktemp("onnx") / "art", threads=2)


def test_onnx_backend_is_built_offline_and_close_to_torch(onnx_artefact, reference):
    manifest = json.loads((onnx_artefact / MANIFEST).read_text())
    assert manifest["backend"] == "onnx" and manifest["check_cosine"] > 0.98
    assert not list(onnx_artefact.glob("*.fp32.onnx"))  # intermediates removed
    op = Embed(EmbedParams(backend="onnx", artefact_dir=str(onnx_artefact), batch_size=3),
               Context())
    v = vectors_of(op.process(batch_of(TEXTS)).table["embedding"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cos = (v * reference).sum(axis=1)
    assert cos.mean() > 0.98 and cos.min() > 0.95
    # a text's vector does not depend on the other texts in the batch
    alone = vectors_of(op.process(batch_of(TEXTS[:1])).table["embedding"])[0]
    np.testing.assert_array_equal(alone, v[0])
    # prepared once: a second call reuses it
    assert prepare_backend(None, "onnx", onnx_artefact) == onnx_artefact


@pytest.fixture(scope="module")
def openvino_artefact(tmp_path_factory):
    """Built from the packaged model, offline (~60 s on 2 cores, int8 calibration included)."""
    return prepare_backend(None, "openvino", tmp_path_factory.mktemp("ov") / "art", threads=2)


def test_openvino_backend_is_built_offline_and_close_to_torch(openvino_artefact, reference):
    manifest = json.loads((openvino_artefact / MANIFEST).read_text())
    assert manifest["backend"] == "openvino" and manifest["check_cosine"] > 0.98
    # the precision the build machine ran: bf16 only where the CPU supports it
    assert manifest["inference_precision"] in PRECISIONS
    assert manifest["check_cosine_int8"] > 0.98
    assert (openvino_artefact / OPENVINO_FILE).exists()
    assert (openvino_artefact / OPENVINO_INT8_FILE).exists()
    assert not list(openvino_artefact.glob("*.onnx"))  # the export is an intermediate
    op = Embed(EmbedParams(backend="openvino", artefact_dir=str(openvino_artefact),
                           batch_size=4, threads=2), Context())
    v = vectors_of(op.process(batch_of(TEXTS)).table["embedding"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cos = (v * reference).sum(axis=1)
    assert cos.mean() >= 0.98 and cos.min() > 0.95
    assert prepare_backend(None, "openvino", openvino_artefact) == openvino_artefact


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_openvino_vector_does_not_depend_on_batch_mates(openvino_artefact, precision):
    """int8 uses scales fixed at calibration, so a batch's contents cannot shift them."""
    enc = load_encoder(None, "openvino", artefact_dir=openvino_artefact, threads=2,
                       precision=precision)
    longer = [TEXTS[1] * 4, " ".join(TEXTS), TEXTS[4] * 2]
    alone = enc.encode([TEXTS[9]], batch_size=8)[0]
    padded = enc.encode(longer + [TEXTS[9]], batch_size=8)[3]  # padded to the longest
    assert alone @ padded > 0.9999
    # batches of one (no padding) agree with one padded batch, row for row
    one_by_one = enc.encode(TEXTS, batch_size=1)
    together = enc.encode(TEXTS, batch_size=len(TEXTS))
    assert (one_by_one * together).sum(axis=1).min() > 0.9999


def test_openvino_reports_the_precision_it_runs(openvino_artefact, reference):
    enc = load_encoder(None, "openvino", artefact_dir=openvino_artefact, threads=2,
                       precision="f32")
    assert enc.precision == "f32" and enc.variant == "openvino-f32"  # cached apart from bf16
    assert (enc.encode(TEXTS, batch_size=4) * reference).sum(axis=1).min() > 0.9999
    with pytest.raises(ValueError, match="precision"):
        load_encoder(None, "openvino", artefact_dir=openvino_artefact, precision="int4")


def test_openvino_int8_stays_close_to_torch(openvino_artefact, reference):
    op = Embed(EmbedParams(backend="openvino", precision="int8", batch_size=4, threads=2,
                           artefact_dir=str(openvino_artefact)), Context())
    op.setup()
    assert op._encoder.precision == "int8"
    assert op._encoder.variant.startswith("openvino-int8-")  # cached apart from bf16/f32
    v = vectors_of(op.process(batch_of(TEXTS)).table["embedding"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cos = (v * reference).sum(axis=1)
    assert cos.mean() >= 0.98 and cos.min() > 0.95


def test_static_backend_loads_a_model2vec_artefact(tmp_path):
    """The static encoder path on a tiny hand-made model2vec model (real distillation takes
    minutes; it is exercised by benchmarks/embed_backends.py)."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(tok.get_vocab_size(), 16)).astype(np.float32)
    StaticModel(vectors=vectors, tokenizer=tok, normalize=True).save_pretrained(str(tmp_path))
    (tmp_path / MANIFEST).write_text(json.dumps({
        "backend": "static", "model_id": "tiny", "max_seq_length": 256, "dim": 16}))
    op = Embed(EmbedParams(backend="static", artefact_dir=str(tmp_path)), Context())
    v = vectors_of(op.process(batch_of(TEXTS)).table["embedding"])
    assert v.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert (v[0] @ v[1]) < 0.99  # distinct texts, distinct vectors


def test_unprepared_artefact_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_backend"):
        load_encoder(None, "onnx", artefact_dir=tmp_path, prepare=False)


def test_runs_in_process_like_the_pipeline(tmp_path):
    out = run_operators([batch_of(TEXTS[:3])], [fake_op()])
    assert out[0]["embedding"].type == pa.list_(pa.float32(), 4)


def test_unset_threads_take_the_actors_share_of_the_cpus(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    assert default_threads(1) == cpus and default_threads(cpus * 4) == 1
    seen = {}

    def fake_load(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop")  # only the arguments matter here

    monkeypatch.setattr("operators.embed.backends.load_encoder", fake_load)
    for actors, params, want in [(1, {}, cpus), (2, {}, max(1, cpus // 2)),
                                 (2, {"threads": 3}, 3)]:
        with pytest.raises(RuntimeError, match="stop"):
            Embed(EmbedParams(**params), Context(actors=actors)).setup()
        assert seen["threads"] == want
    text = ("name: t\ninput: {path: x.parquet}\noutput: {path: o}\n"
            "execution: {concurrency: 3}\nsteps:\n  - op: embed\n")
    assert parse_recipe(text).operators[0].ctx.actors == 3
