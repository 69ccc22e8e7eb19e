"""dedup.minhash: near-duplicate removal by MinHash LSH (algorithms.md section 4).

Stages (the pipeline runs them on Ray; none holds the corpus in one process):
1. `bands` (emit): signatures of each row's word 5-gram set (Broder 1997) and one
   record (band key, row) per LSH band (MMDS ch. 3.4 banding).
2. `edges` (reduce, by band key): rows sharing a bucket become candidate edges: all
   pairs in buckets of up to `clique_max` rows, a star to the smallest row in larger
   ones, so a huge bucket costs linear, not quadratic.
3. `components` (resolve, sees only candidate edges and their rows, whose shingle
   hashes the workers compute while selecting them): edges verified by exact Jaccard
   of the shingle sets (or the signature estimate), connected components, one keeper
   per component: the longest text, ties by input order.
4. `decide` (map): rows of a component other than its keeper are dropped as
   `near_duplicate` with detail = the keeper's id.
Bands are chosen so a pair *at* the threshold is a candidate with p >= 0.99, and
verification then restores precision (algorithms.md 4.2: LSH at the threshold alone
loses recall).
"""

from __future__ import annotations

import json
import os
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from operators.base import (
    ANY,
    ORDER_COLUMN,
    BatchResult,
    ColumnType,
    GlobalOperator,
    Params,
    Stage,
)
from operators.dedup.minhash_lsh import (
    CLIQUE_MAX,
    band_keys,
    bucket_edges,
    choose_bands,
    dedupe_edges,
)
from operators.dedup.minhash_shingles import Shingles, shingle_hashes
from operators.dedup.minhash_signatures import signatures, text_signatures
from operators.dedup.minhash_verify import choose_keepers, connected_components, verify_edges

BAND_KEY = "_mh_band"
_SHINGLES, _LENGTH = "_mh_shingles", "_mh_length"
_REASON, _KEPT, _COMP, _SIZE = "_mh_reason", "_mh_kept", "_mh_component", "_mh_size"


class MinHashParams(Params):
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard at or above which two "
                             "documents are near-duplicates")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations per signature")
    ngram: int = Field(5, ge=1, le=32, description="shingle size in units")
    unit: Literal["word", "char"] = Field("word", description="shingle units: words "
                                          "(\\w+ tokens, lower-cased) or characters")
    bands: int | None = Field(None, ge=1, description="LSH bands (default: chosen from threshold)")
    rows: int | None = Field(None, ge=1, description="rows per band (default: chosen)")
    min_recall: float = Field(0.99, gt=0, lt=1, description="candidate probability required "
                              "at the threshold when choosing bands x rows")
    verify: Literal["exact", "estimate", "none"] = Field(
        "exact", description="check candidates by exact shingle Jaccard, signature estimate, "
        "or not at all (every LSH candidate counts)")
    clique_max: int = Field(CLIQUE_MAX, ge=2, description="LSH buckets of up to this "
                            "many rows give all their pairs as candidates, larger ones a "
                            "star to their first row (linear cost)")
    seed: int = Field(1, description="permutation seed (1 = datasketch's default)")

    @model_validator(mode="after")
    def _fits(self) -> MinHashParams:
        if self.bands and self.rows and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm "
                             f"= {self.num_perm}")
        return self


class MinHashDedup(GlobalOperator):
    name = "dedup.minhash"
    doc = "Near-duplicate removal by MinHash LSH with verification; keeps the longest per cluster."
    Params = MinHashParams
    signal_keys = {"component": "text", "component_size": "num"}
    reasons = ("near_duplicate",)

    def reads(self) -> dict[str, ColumnType]:
        # Keepers and components are named by id; any type, it is cast to text.
        return {**super().reads(), self.ctx.id_column: ANY}

    def shape(self) -> tuple[int, int]:
        p: MinHashParams = self.params
        return choose_bands(p.threshold, p.num_perm, min_recall=p.min_recall,
                            bands=p.bands, rows=p.rows)

    def stages(self) -> list[Stage]:
        text, ident = self.ctx.text_column, self.ctx.id_column
        return [
            Stage("bands", self.bands_of, kind="emit"),
            Stage("edges", self.edges_of_buckets, kind="reduce", key=BAND_KEY),
            Stage("components", self.components, kind="resolve", refs=("a", "b"),
                  columns=(text, ident), prepare=self.shingles_of),
            Stage("decide", self.decide),
        ]

    def bands_of(self, rows: pa.Table) -> pa.Table:
        p: MinHashParams = self.params
        b, r = self.shape()
        texts = rows[self.ctx.text_column].to_pylist()
        sigs = text_signatures(texts, p.num_perm, p.seed, p.ngram, p.unit)
        keys = band_keys(sigs, b, r)
        order = rows[ORDER_COLUMN].to_numpy()
        return pa.table({BAND_KEY: pa.array(keys.ravel(), pa.uint64()),
                         ORDER_COLUMN: pa.array(np.repeat(order, b), pa.int64())})

    def edges_of_buckets(self, records: pa.Table) -> pa.Table:
        """Candidate edges of every bucket in `records` (whole buckets)."""
        if records.num_rows == 0:
            return pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.int64())})
        a, b = bucket_edges(records[BAND_KEY].to_numpy(), records[ORDER_COLUMN].to_numpy(),
                            self.params.clique_max)
        return pa.table({"a": pa.array(a, pa.int64()), "b": pa.array(b, pa.int64())})

    def shingles_of(self, rows: pa.Table) -> pa.Table:
        """Candidate rows -> their shingle hashes, length and id (on the workers)."""
        p: MinHashParams = self.params
        text = rows[self.ctx.text_column]
        sh = shingle_hashes(text.to_pylist(), p.ngram, p.unit)
        return pa.table({
            ORDER_COLUMN: rows[ORDER_COLUMN],
            self.ctx.id_column: pc.cast(rows[self.ctx.id_column], pa.string()),
            _LENGTH: pc.utf8_length(text),
            _SHINGLES: pa.LargeListArray.from_arrays(pa.array(sh.offsets, pa.int64()),
                                                     pa.array(sh.values, pa.uint64())),
        })

    def components(self, edges: pa.Table, rows: pa.Table) -> pa.Table:
        """Verify, connect and pick keepers; one output row per row in a component.

        `rows` are the candidate rows as `shingles_of` made them."""
        p: MinHashParams = self.params
        empty = edges.num_rows == 0
        a = np.empty(0, np.int64) if empty else edges["a"].to_numpy()
        b = np.empty(0, np.int64) if empty else edges["b"].to_numpy()
        a, b = dedupe_edges(a, b)
        candidates = len(a)
        if not rows.num_rows:
            rows = self.shingles_of(pa.table({ORDER_COLUMN: pa.array([], pa.int64()),
                                              self.ctx.id_column: pa.array([], pa.string()),
                                              self.ctx.text_column: pa.array([], pa.string())}))
        rows = rows.sort_by(ORDER_COLUMN)
        order = rows[ORDER_COLUMN].to_numpy()
        lists = rows[_SHINGLES].combine_chunks()
        starts = lists.offsets.to_numpy()
        sh = Shingles(pc.list_flatten(lists).to_numpy(), starts - starts[0])
        if p.verify == "exact" and candidates:
            # This runs on the driver while the workers wait: use the local cores.
            a, b, _ = verify_edges(a, b, p.threshold, shingles=sh, rows=order,
                                   threads=len(os.sched_getaffinity(0)))
        elif p.verify == "estimate" and candidates:
            sigs = signatures(sh, p.num_perm, p.seed)
            a, b, _ = verify_edges(a, b, p.threshold, sigs=sigs, rows=order)
        nodes, comp = connected_components(a, b)
        pos = np.searchsorted(order, nodes)
        length = rows[_LENGTH].to_numpy().astype(np.int64)[pos]
        dropped, kept_by = choose_keepers(nodes, comp, length)
        id_of = dict(zip(order.tolist(), rows[self.ctx.id_column].to_pylist(), strict=True))
        keeper_of = dict(zip(dropped.tolist(), kept_by.tolist(), strict=True))
        # The component's keeper names the component, so its id is stable and readable.
        keeper = np.array([keeper_of.get(n, n) for n in nodes.tolist()], np.int64)
        _, inverse, sizes = np.unique(comp, return_inverse=True, return_counts=True)
        table = pa.table({
            ORDER_COLUMN: pa.array(nodes, pa.int64()),
            _REASON: pa.array([("near_duplicate" if n in keeper_of else None)
                               for n in nodes.tolist()], pa.string()),
            _KEPT: pa.array([id_of[k] for k in keeper.tolist()], pa.string()),
            _COMP: pa.array([id_of[k] for k in keeper.tolist()], pa.string()),
            _SIZE: pa.array(sizes[inverse], pa.float64()),
        })
        b_used, r_used = self.shape()
        metrics = {"bands": b_used, "rows": r_used, "candidate_pairs": candidates,
                   "verified_pairs": len(a), "components": int(len(sizes)),
                   "rows_in_components": len(nodes), "rows_removed": len(dropped)}
        return table.replace_schema_metadata({"curate.metrics": json.dumps(metrics)})

    def decide(self, rows: pa.Table) -> BatchResult:
        reason = rows[_REASON]
        dropped = pc.is_valid(reason)
        none = pa.scalar(None, pa.string())
        component = pc.coalesce(rows[_COMP], pc.cast(rows[self.ctx.id_column], pa.string()))
        return BatchResult(
            rows, reason, pc.if_else(dropped, rows[_KEPT], none),
            {"component": component, "component_size": pc.fill_null(rows[_SIZE], 1.0)},
        )
