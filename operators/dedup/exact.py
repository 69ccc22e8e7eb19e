"""dedup.exact: drop rows whose normalised text equals an earlier row's.

Global operator; only small side records move between workers, never the rows:
1. `hash` (map): 64-bit xxh3 of the normalised text, kept as a temporary column;
2. `keys` (emit): one (hash, row) record per row;
3. `groups` (reduce, by hash): for each hash shared by several rows, every member with
   its leader (smallest `_order`, i.e. first in the input) and the group size;
4. `leaders` (resolve): the leaders' ids, so a dropped row's detail names its keeper;
5. `decide` (map): members other than the leader are dropped as `exact_duplicate`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from operators.base import (
    ANY,
    ORDER_COLUMN,
    BatchResult,
    ColumnType,
    GlobalOperator,
    Params,
    Stage,
)
from operators.text.normalize import NormalizeParams, normalize_text

KEY_COLUMN = "_exact_key"
_LEADER, _COPIES, _KEPT = "_exact_leader", "_exact_copies", "_exact_kept"


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

    def reads(self) -> dict[str, ColumnType]:
        # A dropped row's detail names its keeper's id; any type, it is cast to text.
        return {**super().reads(), self.ctx.id_column: ANY}

    def stages(self) -> list[Stage]:
        return [Stage("hash", self.hash),
                Stage("keys", self.keys_of, kind="emit"),
                Stage("groups", duplicate_groups, kind="reduce", key=KEY_COLUMN),
                Stage("leaders", self.leaders, kind="resolve", refs=(_LEADER,),
                      columns=(self.ctx.id_column,)),
                Stage("decide", self.decide)]

    def hash(self, batch: pa.Table) -> BatchResult:
        p: ExactParams = self.params
        text = batch[self.ctx.text_column].combine_chunks()
        if p.normalize:
            text = normalize_text(text, NormalizeParams())
        if p.lowercase:
            text = pc.utf8_lower(text)
        keys = text_hashes(text)
        return BatchResult.keep_all(batch.append_column(KEY_COLUMN, keys))

    def keys_of(self, rows: pa.Table) -> pa.Table:
        return rows.select([KEY_COLUMN, ORDER_COLUMN])

    def leaders(self, groups: pa.Table, rows: pa.Table) -> pa.Table:
        """Per duplicated row: its leader's id and the group size (attached by `_order`)."""
        if groups.num_rows == 0:
            return pa.table({ORDER_COLUMN: pa.array([], pa.int64()),
                             _KEPT: pa.array([], pa.string()),
                             _COPIES: pa.array([], pa.float64())})
        leader_orders = rows[ORDER_COLUMN].to_numpy()
        ids = pc.cast(rows[self.ctx.id_column], pa.string()).combine_chunks()
        pos = np.argsort(leader_orders)
        at = pos[np.searchsorted(leader_orders, groups[_LEADER].to_numpy(), sorter=pos)]
        member = groups[ORDER_COLUMN].to_numpy()
        is_dup = member != groups[_LEADER].to_numpy()
        return pa.table({
            ORDER_COLUMN: groups[ORDER_COLUMN],
            _KEPT: pc.if_else(pa.array(is_dup), ids.take(pa.array(at)),
                              pa.scalar(None, pa.string())),
            _COPIES: pc.cast(groups[_COPIES], pa.float64()),
        })

    def decide(self, batch: pa.Table) -> BatchResult:
        kept_by = batch[_KEPT]
        dropped = pc.is_valid(kept_by)
        none = pa.scalar(None, pa.string())
        keys = batch[KEY_COLUMN].to_numpy()
        return BatchResult(
            batch,
            pc.if_else(dropped, "exact_duplicate", none),
            kept_by,
            {
                "text_hash": pa.array([f"{k:016x}" for k in keys.tolist()], pa.string()),
                "copies": pc.fill_null(batch[_COPIES], 1.0),
            },
        )


def duplicate_groups(records: pa.Table) -> pa.Table:
    """Members of every hash group with more than one row, with leader and group size."""
    if records.num_rows == 0:
        return pa.table({ORDER_COLUMN: pa.array([], pa.int64()),
                         _LEADER: pa.array([], pa.int64()), _COPIES: pa.array([], pa.int64())})
    keys = records[KEY_COLUMN].to_numpy()
    order = records[ORDER_COLUMN].to_numpy()
    leader = order[first_of_each_group(keys, order)]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    copies = counts[inverse]
    shared = copies > 1
    return pa.table({ORDER_COLUMN: pa.array(order[shared], pa.int64()),
                     _LEADER: pa.array(leader[shared], pa.int64()),
                     _COPIES: pa.array(copies[shared], pa.int64())})
