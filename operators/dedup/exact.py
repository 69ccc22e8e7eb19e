"""dedup.exact: drop rows whose normalised text equals an earlier row's.

Global operator, two stages: `hash` (map: 64-bit xxh3 of the normalised text) then
`decide` (grouped by hash: keep the row that comes first in the input, i.e. smallest
`_order`; drop the others with detail = the kept row's id).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from operators.base import ORDER_COLUMN, BatchResult, GlobalOperator, Params, Stage
from operators.text.normalize import NormalizeParams, normalize_text

KEY_COLUMN = "_exact_key"


class ExactParams(Params):
    lowercase: bool = Field(False, description="compare texts case-insensitively")
    normalize: bool = Field(
        True, description="compare after NFC + whitespace normalisation (see text.normalize)"
    )


def text_hashes(text: pa.Array) -> pa.Array:
    """xxh3-64 of each text's UTF-8 bytes, as uint64."""
    digest = xxhash.xxh3_64_intdigest
    raw = pc.cast(text, pa.binary()).to_pylist()
    values = np.fromiter((digest(t) for t in raw), dtype=np.uint64, count=len(raw))
    return pa.array(values, pa.uint64())


def first_of_each_group(keys: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each row, the index of the row with the smallest `order` among equal keys."""
    perm = np.lexsort((order, keys))
    sorted_keys = keys[perm]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    leader_pos = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    leader = np.empty(len(keys), dtype=np.int64)
    leader[perm] = perm[leader_pos]
    return leader


class ExactDedup(GlobalOperator):
    name = "dedup.exact"
    doc = "Drop exact duplicates of the normalised text; the first row in input order is kept."
    Params = ExactParams
    signal_keys = {"text_hash": "text", "copies": "num"}
    reasons = ("exact_duplicate",)

    def stages(self) -> list[Stage]:
        return [Stage("hash", self.hash),
                Stage("decide", self.decide, kind="grouped", key=KEY_COLUMN)]

    def hash(self, batch: pa.Table) -> BatchResult:
        p: ExactParams = self.params
        text = batch[self.ctx.text_column].combine_chunks()
        if p.normalize:
            text = normalize_text(text, NormalizeParams())
        if p.lowercase:
            text = pc.utf8_lower(text)
        keys = text_hashes(text)
        return BatchResult.keep_all(batch.append_column(KEY_COLUMN, keys))

    def decide(self, batch: pa.Table) -> BatchResult:
        keys = batch[KEY_COLUMN].to_numpy()
        order = batch[ORDER_COLUMN].to_numpy()
        leader = first_of_each_group(keys, order)
        is_dup = leader != np.arange(len(keys))
        ids = batch[self.ctx.id_column].combine_chunks()
        kept_ids = pc.cast(pc.take(ids, pa.array(leader)), pa.string())
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        copies = counts[inverse]
        mask = pa.array(is_dup)
        none = pa.scalar(None, pa.string())
        return BatchResult(
            batch,
            pc.if_else(mask, "exact_duplicate", none),
            pc.if_else(mask, kept_ids, none),
            {
                "text_hash": pa.array([f"{k:016x}" for k in keys.tolist()], pa.string()),
                "copies": pa.array(copies, pa.float64()),
            },
        )
