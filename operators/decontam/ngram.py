"""decontam.ngram: flag rows that hold a benchmark item, by shared word n-grams.

GPT-3-style n-gram decontamination (App. C; algorithms.md 3.1) scored per item:
benchmark items become hashed word n-grams (`ngram_hashing`); grams shared by more than
`max_item_frequency` items of a benchmark are its template and are ignored; a row's
score for an item is the share of that item's remaining (distinctive) grams found in
the row, and the row is flagged when its best item's score reaches `threshold`
(`ngram_index`). With `index: bloom` the grams go into a Bloom filter instead (Data
Portraits, algorithms.md 3.4; `bloom_index`), smaller but naming only the benchmark.

Stages:
1. `items` and `index` (fit): load the benchmark files and build the index, once, in one
   process; the engine shares it with the workers through the object store. `items`
   (benchmark, item id, file, row) is recorded for the `benchmark_items` stats view.
2. `match` (map): each row's best item, its score and the matched span (characters from
   the first to the last matched gram of that item in the row); the signals.
3. `flagged` (emit) and `summary` (resolve): only the flagged rows' items travel, for the
   step's metrics (index size and memory, items leaked, flagged rows, Bloom rates).
4. `decide` (map): `action: drop` drops flagged rows as `contaminated`; `annotate` keeps
   them with the signals.

Defaults (docs/contamination.md has the measurements): n = 7, not GPT-3's 13, because
light edits (about 12% of words dropped, sentences shuffled) leave too few intact
13-grams in short items (recall 0.95 on the dev plants at any threshold); threshold 0.1,
about midway between the lowest lightly edited plant and the highest same-task near miss.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from operators.base import ORDER_COLUMN, BatchResult, Context, GlobalOperator, Stage
from operators.decontam.benchmark_sets import (
    ITEMS_STAGE,
    REASON,
    SIGNAL_KEYS,
    BenchmarkItems,
    DecontamParams,
    items_table,
    load_benchmark_items,
)
from operators.decontam.bloom_index import BloomIndex, bloom_match, build_bloom
from operators.decontam.ngram_hashing import char_spans, words
from operators.decontam.ngram_index import Matches, NgramIndex, build_index, match
from pipelines.errors import CurateError

_FLAG, _ITEM, _DETAIL = "_dc_flag", "_dc_item", "_dc_detail"


class NgramParams(DecontamParams):
    n: int = Field(7, ge=1, le=64, description="words per n-gram (GPT-3 used 13, which "
                   "loses lightly edited copies; 7 was measured best on natural language "
                   "and code: docs/contamination.md)")
    threshold: float = Field(0.1, gt=0, le=1, description="flag a row when it holds at least "
                             "this share of one item's distinctive n-grams")
    min_grams: int = Field(2, ge=1, description="a row must also hold at least this many "
                           "of the item's distinctive n-grams (all, if it has fewer): one "
                           "shared phrase is topic, not a copy")
    max_item_frequency: int = Field(10, ge=1, description="ignore n-grams found in more than "
                                    "this many items of the same benchmark: its templates "
                                    "and instructions (GPT-3: 10)")
    min_words: int = Field(5, ge=1, description="an item shorter than n words is one gram of "
                               "all its words if it has at least min_words words; shorter "
                               "items are not indexed (counted in the metrics)")
    index: Literal["exact", "bloom"] = Field("exact", description="exact: sorted hash "
                                             "arrays naming the item; bloom: a Bloom filter "
                                             "(smaller, names only the benchmark)")
    max_index_mb: float = Field(4096, gt=0, description="refuse (with a clear error) an "
                                "index larger than this; every worker maps it once")
    bloom_error_rate: float = Field(1e-6, gt=0, lt=0.5, description="Bloom filter false-"
                                    "positive rate per gram it is sized for")
    bloom_min_chain: int = Field(3, ge=1, description="with bloom: flag a row holding at "
                                 "least this many consecutive member n-grams")


class NgramDecontam(GlobalOperator):
    name = "decontam.ngram"
    doc = ("Flag rows holding a benchmark item: share of the item's distinctive word "
           "n-grams found in the row (template n-grams ignored); drop or annotate.")
    Params = NgramParams
    signal_keys = SIGNAL_KEYS
    reasons = (REASON,)

    def __init__(self, params: NgramParams, context: Context | None = None) -> None:
        super().__init__(params, context)
        # Loading here reports a bad benchmark file at `curate validate`, at this step's
        # line; the load is cached, so the fit stage does not read the files again.
        self._load()

    def _load(self) -> BenchmarkItems:
        p: NgramParams = self.params
        return load_benchmark_items(p.benchmarks, p.id_column, p.text_columns,
                                    p.benchmark_column)

    def stages(self) -> list[Stage]:
        return [Stage(ITEMS_STAGE, self.fit_items, kind="fit", sample=1),
                Stage("index", self.fit_index, kind="fit", sample=1),
                Stage("match", self.match, uses=("index",)),
                Stage("flagged", self.flagged, kind="emit"),
                Stage("summary", self.summary, kind="resolve", uses=("index",)),
                Stage("decide", self.decide)]

    def fit_items(self, sample: pa.Table) -> pa.Table:
        """fit: the items checked (recorded for the `benchmark_items` view)."""
        return items_table(self._load())

    def fit_index(self, sample: pa.Table) -> NgramIndex | BloomIndex:
        """fit: the index of the benchmark items (the corpus sample is not used)."""
        p: NgramParams = self.params
        items = self._load()
        index = (build_bloom(items, p.n, p.max_item_frequency, p.bloom_error_rate)
                 if p.index == "bloom" else
                 build_index(items, p.n, p.max_item_frequency, p.min_words))
        if index.nbytes > p.max_index_mb * 2**20:
            hint = "" if p.index == "bloom" else ", or use index: bloom"
            raise CurateError(f"{self.name}: the index of {len(items):,} benchmark items takes "
                              f"{index.nbytes / 2**20:,.0f} MB > max_index_mb="
                              f"{p.max_index_mb:g}; raise max_index_mb{hint}")
        return index

    def match(self, rows: pa.Table, index: NgramIndex | BloomIndex) -> BatchResult:
        """map: best item per row, flag, signals, and the detail for `decide`."""
        p: NgramParams = self.params
        text = rows[self.ctx.text_column].combine_chunks()
        w = words(text)
        bloom = isinstance(index, BloomIndex)
        m = bloom_match(index, w) if bloom else match(index, w, p.min_grams)
        flag = (m.item >= 0) & (m.score >= (p.bloom_min_chain if bloom else p.threshold))
        signals, detail = self._signals(text, w.counts, m, flag, index)
        table = (rows.append_column(_FLAG, pa.array(flag))
                 .append_column(_ITEM, pa.array(np.where(flag, m.item, -1), pa.int64()))
                 .append_column(_DETAIL, detail))
        return BatchResult.keep_all(table, signals)

    def _signals(self, text: pa.Array, counts: np.ndarray, m: Matches, flag: np.ndarray,
                 index: NgramIndex | BloomIndex) -> tuple[dict, pa.Array]:
        n = len(flag)
        bloom = isinstance(index, BloomIndex)
        bench: list[str | None] = [None] * n
        item_id: list[str | None] = [None] * n
        detail: list[str | None] = [None] * n
        start, end = np.full(n, np.nan), np.full(n, np.nan)
        for r in np.flatnonzero(flag).tolist():
            it = int(m.item[r])
            bench[r] = index.names[it] if bloom else index.benchmarks[it]
            item_id[r] = None if bloom else index.ids[it]
            s, e = char_spans(text[r].as_py(), int(counts[r]))
            start[r], end[r] = s[m.first_word[r]], e[m.end_word[r] - 1]
            what = (f"longest chain={int(m.score[r])} n-grams" if bloom
                    else f"item={item_id[r]} score={m.score[r]:.3f}")
            detail[r] = (f"benchmark={bench[r]} {what} span={int(start[r])}-{int(end[r])} "
                         f"({'bloom' if bloom else 'ngram'} n={index.n})")
        method = pa.array(np.where(flag, "bloom" if bloom else "ngram", None), pa.string())
        signals = {"benchmark": pa.array(bench, pa.string()),
                   "matched_id": pa.array(item_id, pa.string()), "method": method,
                   "score": pa.array(m.score, mask=~flag),
                   "span_start": pa.array(start, mask=~flag),
                   "span_end": pa.array(end, mask=~flag)}
        return signals, pa.array(detail, pa.string())

    def flagged(self, rows: pa.Table) -> pa.Table:
        """emit: (_order, item) of each flagged row."""
        return rows.filter(rows[_FLAG]).select([ORDER_COLUMN, _ITEM])

    def summary(self, side: pa.Table, rows: pa.Table, index: NgramIndex | BloomIndex
                ) -> pa.Table:
        """resolve: nothing to attach; the step's figures in `curate.metrics`."""
        items = side[_ITEM].to_numpy() if _ITEM in side.column_names else np.empty(0)
        bloom = isinstance(index, BloomIndex)
        figures = {**index.figures, "method": "bloom" if bloom else "ngram",
                   "index_bytes": index.nbytes, "flagged_rows": len(items),
                   ("benchmarks_matched" if bloom else "items_matched"):
                   int(len(np.unique(items)))}
        out = pa.table({ORDER_COLUMN: pa.array([], pa.int64())})
        return out.replace_schema_metadata({"curate.metrics": json.dumps(figures)})

    def decide(self, rows: pa.Table) -> BatchResult:
        """map: drop (or keep, with `annotate`) the flagged rows."""
        none = pa.scalar(None, pa.string())
        if _FLAG not in rows.column_names or self.params.action == "annotate":
            return BatchResult.keep_all(rows)
        flag = rows[_FLAG]
        return BatchResult(rows, pc.if_else(flag, REASON, none),
                           pc.if_else(flag, rows[_DETAIL], none))
