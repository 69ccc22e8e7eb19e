"""decontam.embedding: benchmark leaks found by the nearest benchmark item, by cosine, of a
document's spans; catches rephrased, reordered, cut and re-identified copies that n-grams
miss (algorithms.md section 3.5, Yang et al. 2023: n-gram checks miss rephrasing).

Stages (the maths is in `embedding_math`):
1. `items` (fit: the items checked, for the `benchmark_items` stats view) and `index`
   (fit, once, in one process): the benchmark items (`benchmark_sets`) embedded
   with the step's encoder, each item's cosine to its nearest sibling in its own benchmark,
   and its threshold `max(min_score, max(sibling, floor) + margin)`, floor the
   `sibling_floor` quantile of its benchmark's sibling cosines (`half_margin` for a
   half) [issue 13: calibrate against the
   nearest sibling, so a *different* item of the same task, which shares the task's
   template, is not flagged]. With `item_halves`, each item's first and second half (by
   words) are indexed too, each calibrated against the same halves of its siblings, so a
   leak of only the question, or of a cut item, still matches. The value (a table of item
   vectors, ids and thresholds) is shared once with the workers and recorded under the run
   folder (`fitted/`).
2. `match` (map, model-backed: the encoder loads once per actor in `setup()`, the faiss
   index once per actor from the fitted table): each document's spans (word windows about
   as long as the median item and half as long, half-overlapping, plus its paragraphs; at
   most `max_spans` of each), embedded, searched against the items (exact inner product; IVF above
   `ivf_above` items), and the best (span, item) pair whose cosine reaches the item's
   threshold.
3. `tally` (emit) and `summary` (resolve): the step's figures (`ops.metrics`): items,
   dim, index bytes, the threshold and sibling distributions, spans embedded, documents
   flagged.
4. `decide` (map): a flagged row is dropped as `contaminated` (or, with `action: annotate`,
   kept) with the signals benchmark, matched_id, method ("embedding"), score (the cosine),
   threshold, span_start/span_end (character offsets of the matching span in the text),
   and a detail naming all of them.

Calibration figures and why these defaults: docs/contamination.md, "decontam.embedding".
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from operators.base import (
    ORDER_COLUMN,
    BatchResult,
    Context,
    GlobalOperator,
    Stage,
)
from operators.decontam.benchmark_sets import (
    ITEMS_STAGE,
    REASON,
    SIGNAL_KEYS,
    BenchmarkItems,
    DecontamParams,
    items_table,
    load_benchmark_items,
)
from operators.decontam.embedding_math import (
    best_matches,
    build_index,
    default_window,
    document_spans,
    item_thresholds,
    search,
    sibling_cosines,
)
from operators.embed.backends import MODEL_HELP, Backend, LocalModel, backend_help

METHOD = "embedding"
_ITEM, _SCORE, _THRESHOLD = "_dce_item", "_dce_score", "_dce_threshold"
_START, _END, _SPANS = "_dce_start", "_dce_end", "_dce_spans"
_KEY, _DOCS, _FLAGGED = "_dce_key", "_dce_docs", "_dce_flagged"
# Words each half of an item must have to be indexed on its own (`item_views`).
HALF_WORDS = 4
# What the fitted table's schema metadata records besides its columns.
_META_WINDOW, _META_KEY = b"curate.window_words", b"curate.index_key"


class EmbeddingDecontamParams(DecontamParams):
    model: LocalModel = Field(None, description=MODEL_HELP)
    backend: Backend = Field("openvino", description=backend_help())
    precision: Literal["bf16", "int8", "f32"] = Field(
        "bf16", description="openvino only: bf16 (closest to torch), int8 or f32")
    margin: float = Field(0.1, ge=0.0, le=1.0, description="a span flags item i when its "
                          "cosine reaches the cosine of i's nearest sibling in its own "
                          "benchmark (at least the benchmark's sibling_floor quantile) plus "
                          "this margin, and min_score")
    half_margin: float = Field(0.13, ge=0.0, le=1.0, description="the margin for a match "
                               "on an item's half (item_halves): a half says less than the "
                               "whole item, so a topic neighbour gets closer to it")
    sibling_floor: float = Field(0.75, ge=0.0, le=1.0, description="quantile of its "
                                 "benchmark's nearest-sibling cosines that stands in for an "
                                 "item's own when that is lower (an item in a sparse corner "
                                 "of its task is still as close to a new item of the task "
                                 "as typical siblings are to each other); 0 turns it off")
    min_score: float = Field(0.7, ge=-1.0, le=1.0, description="cosine every match must "
                             "reach, whatever the item's siblings (the whole threshold of an "
                             "item alone in its benchmark)")
    max_score: float = Field(0.95, ge=-1.0, le=1.0, description="the calibrated threshold "
                             "is capped here: a span this close to an item is a copy of it "
                             "(or of a near-identical sibling) however dense its benchmark")
    item_halves: bool = Field(True, description="also index each item's first and second "
                              "half (by words; items of 8 words or more), calibrated against "
                              "the siblings' halves, so partial leaks (only the question, a "
                              "cut item) match")
    window_words: int | None = Field(None, ge=4, le=1000, description="words per document "
                                     "window (default: the median item length, within "
                                     "16-160); windows overlap by half")
    half_windows: bool = Field(True, description="also search windows of half that many "
                               "words: finds leaks that are not their own paragraph (3x the "
                               "windows to embed)")
    max_spans: int = Field(64, ge=1, le=4096, description="at most this many windows of each "
                           "size, and this many paragraphs, per document (a longer "
                           "document's windows are spread evenly over it)")
    paragraph_min_words: int = Field(16, ge=1, le=10_000, description="paragraphs (blank-"
                                     "line separated) of at least this many words and at most "
                                     "2 windows are spans of their own")
    top_k: int = Field(8, ge=1, le=256, description="nearest items searched per span (the "
                       "match is the one furthest above its own threshold)")
    ivf_above: int = Field(200_000, ge=1, description="exact search (IndexFlatIP) up to this "
                           "many indexed vectors, IVF beyond")
    nprobe: int = Field(32, ge=1, le=65536, description="IVF lists searched per span")
    batch_size: int = Field(32, ge=1, le=4096, description="texts per forward pass")
    threads: int | None = Field(None, ge=1, le=512, description="intra-op threads per actor "
                                "(default: this machine's CPUs / the step's actor count)")
    artefact_dir: str | None = Field(None, description="prepared onnx/openvino/static artefact "
                                     "directory (default: the user cache, built if missing)")


class EmbeddingDecontam(GlobalOperator):
    name = "decontam.embedding"
    doc = ("Benchmark leaks by embedding: a document span whose cosine to a benchmark item "
           "beats that item's nearest sibling by a margin (rephrased, cut, re-identified).")
    Params = EmbeddingDecontamParams
    signal_keys = {**SIGNAL_KEYS, "threshold": "num"}
    reasons = (REASON,)

    def __init__(self, params: EmbeddingDecontamParams, context: Context | None = None) -> None:
        super().__init__(params, context)
        # Load and check the benchmark files now, so `curate validate` reports a bad one
        # (naming file and row) at the step's line; the load is cached per process.
        items = self._items()
        if not len(items):
            raise ValueError("decontam.embedding: the benchmark files hold no items")
        self._encoder = None
        self._index = None
        self._index_key = None

    def _items(self) -> BenchmarkItems:
        p: EmbeddingDecontamParams = self.params
        return load_benchmark_items(p.benchmarks, p.id_column, p.text_columns,
                                    p.benchmark_column)

    def __getstate__(self) -> dict:
        # Shipped to actors before setup(); a loaded model or index is never pickled.
        state = self.__dict__.copy()
        state["_encoder"] = state["_index"] = state["_index_key"] = None
        return state

    def setup(self) -> None:
        if self._encoder is None:
            from operators.embed.backends import load_encoder
            from operators.embed.embed import default_threads

            p: EmbeddingDecontamParams = self.params
            threads = p.threads or default_threads(self.ctx.actors)
            self._encoder = load_encoder(p.model, p.backend, threads=threads,
                                         artefact_dir=p.artefact_dir, precision=p.precision)
            import faiss

            faiss.omp_set_num_threads(threads)

    def stages(self) -> list[Stage]:
        text = self.ctx.text_column
        # The fits read no corpus rows (the index is the benchmark's); one sampled row
        # satisfies the stage contract.
        return [
            Stage(ITEMS_STAGE, self.fit_items, kind="fit", sample=1, columns=(text,)),
            Stage("index", self.fit, kind="fit", sample=1, columns=(text,)),
            Stage("match", self.match, uses=("index",), actor=True),
            Stage("tally", tally, kind="emit"),
            Stage("summary", self.summary, kind="resolve", uses=("index",)),
            Stage("decide", self.decide, uses=("index",)),
        ]

    # ---- fit ----------------------------------------------------------------------------

    def fit_items(self, sample: pa.Table) -> pa.Table:
        """fit: the items checked (benchmark, id, file, row), recorded for the
        `benchmark_items` stats view."""
        return items_table(self._items())

    def fit(self, sample: pa.Table) -> pa.Table:
        """fit: the item table: one row per indexed text (an item, or one of its halves)
        with its item's position, view, vector, nearest-sibling cosine and threshold."""
        p: EmbeddingDecontamParams = self.params
        self.setup()
        items = self._items()
        words = np.asarray([len(t.split()) for t in items.texts], np.int64)
        window = p.window_words or default_window(words)
        texts, item, view = item_views(items.texts, p.item_halves)
        vectors = self._encoder.encode(texts, p.batch_size)
        # Calibrated within (benchmark, view): a question half against question halves.
        bench = np.asarray(items.benchmarks, object)[item]
        groups = np.unique(np.char.add(bench.astype(str), np.asarray(view, str)),
                           return_inverse=True)[1]
        sibling = sibling_cosines(vectors, groups)
        margin = np.where(np.asarray(view) == "item", p.margin, p.half_margin)
        threshold = item_thresholds(sibling, groups, p.min_score, margin, p.sibling_floor,
                                   p.max_score)
        dim = vectors.shape[1]
        table = pa.table({
            "item": pa.array(item, pa.int64()),
            "id": pa.array([items.ids[i] for i in item.tolist()], pa.string()),
            "benchmark": pa.array(bench.tolist(), pa.string()),
            "view": pa.array(view, pa.string()),
            "sibling": pa.array(sibling, pa.float32(), mask=np.isnan(sibling)),
            "threshold": pa.array(threshold, pa.float32()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(vectors).reshape(-1), pa.float32()), dim),
        })
        key = (f"{self._encoder.model_id}:{getattr(self._encoder, 'variant', p.backend)}:"
               f"{len(table)}:{float(threshold.sum()):.6f}")
        return table.replace_schema_metadata({_META_WINDOW: str(window).encode(),
                                              _META_KEY: key.encode()})

    def _searcher(self, index: pa.Table):
        """(faiss index, item vectors) of the fitted table, built once per process (actor)."""
        key = (index.schema.metadata or {}).get(_META_KEY)
        if self._index is None or self._index_key != key:
            vectors = item_vectors(index)
            self._index = (build_index(vectors, self.params.ivf_above, self.params.nprobe,
                                       self.ctx.seed), vectors)
            self._index_key = key
        return self._index

    # ---- match ----------------------------------------------------------------------------

    def match(self, rows: pa.Table, index: pa.Table) -> BatchResult:
        """map (actor): each row's best flagged (span, item) pair, as temporary columns."""
        p: EmbeddingDecontamParams = self.params
        self.setup()
        texts = rows[self.ctx.text_column].to_pylist()
        window = int((index.schema.metadata or {}).get(_META_WINDOW, b"16"))
        spans = document_spans(texts, window, p.max_spans, p.paragraph_min_words,
                               p.half_windows)
        n = rows.num_rows
        thresholds = index["threshold"].to_numpy()
        if len(spans) and len(index):
            vectors = self._encoder.encode(spans.texts(texts), p.batch_size)
            searcher, items = self._searcher(index)
            cos, found = search(searcher, vectors, p.top_k, items)
        else:
            cos = np.zeros((len(spans), 1), np.float32)
            found = np.full((len(spans), 1), -1, np.int64)
        m = best_matches(spans.doc, cos, found, thresholds, n)
        hit = m.item >= 0
        at = np.maximum(m.span, 0)
        start = np.where(hit, spans.start[at] if len(spans) else 0, -1)
        end = np.where(hit, spans.end[at] if len(spans) else 0, -1)
        thr = np.where(hit, thresholds[np.maximum(m.item, 0)], np.nan)
        table = rows
        for name, values in ((_ITEM, pa.array(m.item, pa.int64())),
                             (_SCORE, pa.array(m.score.astype(np.float64), mask=~hit)),
                             (_THRESHOLD, pa.array(thr.astype(np.float64), mask=~hit)),
                             (_START, pa.array(start, pa.int64())),
                             (_END, pa.array(end, pa.int64())),
                             (_SPANS, pa.array(np.bincount(spans.doc, minlength=n),
                                               pa.int64()))):
            table = table.append_column(name, values)
        return BatchResult.keep_all(table)

    # ---- figures ----------------------------------------------------------------------------

    def summary(self, side: pa.Table, rows: pa.Table, index: pa.Table) -> pa.Table:
        """resolve: no rows to decide; the step's figures in `curate.metrics`."""
        figures = index_metrics(index)
        if _DOCS in side.column_names and side.num_rows:
            figures |= {"docs": int(pc.sum(side[_DOCS]).as_py()),
                        "spans_embedded": int(pc.sum(side[_SPANS]).as_py()),
                        "flagged": int(pc.sum(side[_FLAGGED]).as_py())}
        else:
            figures |= {"docs": 0, "spans_embedded": 0, "flagged": 0}
        out = pa.table({ORDER_COLUMN: pa.array([], pa.int64())})
        return out.replace_schema_metadata({b"curate.metrics": json.dumps(figures).encode()})

    # ---- decide -----------------------------------------------------------------------------

    def decide(self, rows: pa.Table, index: pa.Table) -> BatchResult:
        """map: the signals of flagged rows; drop them unless `action: annotate`."""
        item = rows[_ITEM].to_numpy()
        hit = item >= 0
        n = rows.num_rows
        none = pa.nulls(n, pa.string())
        # Every batch carries every signal column (null where not flagged), so the
        # batches' schemas agree.
        at = pa.array(np.maximum(item, 0)) if len(index) else pa.array(np.full(n, None),
                                                                        pa.int64())
        mask = pa.array(~hit)
        ids = pc.if_else(mask, pa.scalar(None, pa.string()), index["id"].take(at))
        bench = pc.if_else(mask, pa.scalar(None, pa.string()), index["benchmark"].take(at))
        view = index["view"].take(at).to_pylist()
        score, thr = rows[_SCORE].to_pylist(), rows[_THRESHOLD].to_pylist()
        sibling = index["sibling"].take(at).to_pylist()
        start, end = rows[_START].to_numpy(), rows[_END].to_numpy()
        details = [None if not h else match_detail(b, i, v, s, t, sib, a, e)
                   for h, b, i, v, s, t, sib, a, e in zip(
                       hit.tolist(), bench.to_pylist(), ids.to_pylist(), view, score, thr,
                       sibling, start.tolist(), end.tolist(), strict=True)]
        detail = pa.array(details, pa.string())
        signals = {
            "benchmark": bench, "matched_id": ids,
            "method": pc.if_else(mask, pa.scalar(None, pa.string()), METHOD),
            "score": rows[_SCORE], "threshold": rows[_THRESHOLD],
            "span_start": pa.array(start.astype(np.float64), mask=~hit),
            "span_end": pa.array(end.astype(np.float64), mask=~hit),
        }
        if self.params.action == "annotate":
            return BatchResult(rows, none, none, signals)
        reason = pc.if_else(mask, pa.scalar(None, pa.string()), REASON)
        return BatchResult(rows, reason, detail, signals)


def item_views(texts: list[str], halves: bool, min_half_words: int = HALF_WORDS
               ) -> tuple[list[str], np.ndarray, list[str]]:
    """The texts to index: every item whole and, with `halves`, its first and second half
    by words for items of at least 2 * `min_half_words` words (a shorter half says too
    little to match on; raising the bound to 16 words a half cost code recall on the dev
    set and removed no false positive). Returns
    the texts, the item each belongs to, and its view ("item", "head", "tail")."""
    out, item, view = list(texts), list(range(len(texts))), ["item"] * len(texts)
    if halves:
        for i, text in enumerate(texts):
            words = text.split()
            if len(words) < 2 * min_half_words:
                continue
            half = len(words) // 2
            out += [" ".join(words[:half]), " ".join(words[half:])]
            item += [i, i]
            view += ["head", "tail"]
    return out, np.asarray(item, np.int64), view


def item_vectors(index: pa.Table) -> np.ndarray:
    """The fitted table's vectors as an (n, dim) float32 array."""
    column = index["vector"].combine_chunks()
    dim = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)


def match_detail(benchmark: str, item_id: str, view: str, score: float, threshold: float,
                 sibling: float | None, start: int, end: int) -> str:
    """The dropped row's detail, in `decontam.ngram`'s form: which item leaked, how close,
    where; then the threshold, the sibling it came from and the item's part that matched."""
    sib = "no sibling" if sibling is None else f"nearest sibling {sibling:.3f}"
    part = "" if view == "item" else f", {'first' if view == 'head' else 'second'} half"
    return (f"benchmark={benchmark} item={item_id} score={score:.3f} span={start}-{end} "
            f"({METHOD}, threshold {threshold:.3f}, {sib}{part})")


def tally(rows: pa.Table) -> pa.Table:
    """emit: one record per batch: documents, spans embedded, documents flagged."""
    if _SPANS not in rows.column_names:
        return pa.table({ORDER_COLUMN: pa.array([], pa.int64()), _KEY: pa.array([], pa.int64()),
                         _DOCS: pa.array([], pa.int64()), _SPANS: pa.array([], pa.int64()),
                         _FLAGGED: pa.array([], pa.int64())})
    flagged = int(pc.sum(pc.greater_equal(rows[_ITEM], 0)).as_py() or 0)
    first = int(pc.min(rows[ORDER_COLUMN]).as_py()) if rows.num_rows else -1
    return pa.table({ORDER_COLUMN: [first], _KEY: [0], _DOCS: [rows.num_rows],
                     _SPANS: [int(pc.sum(rows[_SPANS]).as_py() or 0)], _FLAGGED: [flagged]},
                    schema=pa.schema([(c, pa.int64()) for c in
                                      (ORDER_COLUMN, _KEY, _DOCS, _SPANS, _FLAGGED)]))


def index_metrics(index: pa.Table) -> dict:
    """The index's figures: items, vectors per view, dim, bytes, thresholds, siblings."""
    n = index.num_rows
    dim = index["vector"].type.list_size
    thresholds = index["threshold"].to_numpy()
    sibling = index["sibling"].to_numpy(zero_copy_only=False).astype(np.float64)
    views = dict(zip(*np.unique(index["view"].to_numpy(zero_copy_only=False),
                                return_counts=True), strict=True))

    def summary(x: np.ndarray) -> dict:
        x = x[~np.isnan(x)]
        if not len(x):
            return {}
        q = np.quantile(x, [0.0, 0.1, 0.5, 0.9, 1.0])
        return dict(zip(("min", "p10", "median", "p90", "max"),
                        (round(float(v), 4) for v in q), strict=True))

    items = len(np.unique(index["item"].to_numpy())) if n else 0
    return {"items": items, "vectors": n, "views": {str(k): int(v) for k, v in views.items()},
            "dim": dim, "index_bytes": n * dim * 4,
            "window_words": int((index.schema.metadata or {}).get(_META_WINDOW, b"0")),
            "threshold": summary(thresholds.astype(np.float64)),
            "sibling_cosine": summary(sibling),
            "items_without_sibling": int(np.isnan(sibling).sum())}
