"""Finding input rows whose id an earlier row already has (pure logic, no Ray).

In input order (shard index, then row) the first row with an id keeps it; every later
row with the same id is quarantined at step 0 as `duplicate_id`, its detail naming the
first occurrence. Only ids given in the input are checked (`Shard.has_id`): generated
`FILE:ROW` ids are unique by construction. A row counts as having its id whatever else
is wrong with it, so the outcome depends only on the input files.

Records are (hash, shard, row[, id, line]): `hash` is xxh3-64 of the id's UTF-8 bytes,
used to group records cheaply (`pipelines.plan` shuffles them by hash in Ray tasks);
within a shared hash the id strings themselves decide, so a hash collision never drops
a row. `duplicates_in_process` is the same check in this process.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.dedup.exact import text_hashes
from pipelines.reader import read_ids
from pipelines.shards import Shard

HASH = "hash"
KEY_SCHEMA = pa.schema([(HASH, pa.uint64()), ("shard", pa.int32()), ("row", pa.int64())])
RECORD_SCHEMA = pa.schema([*KEY_SCHEMA, ("id", pa.string()), ("line", pa.int64())])
FOUND_SCHEMA = pa.schema([("shard", pa.int32()), ("row", pa.int64()), ("line", pa.int64()),
                          ("id", pa.string()), ("first_shard", pa.int32()),
                          ("first_row", pa.int64()), ("first_line", pa.int64())])
QUARANTINE_SCHEMA = pa.schema([("shard", pa.int32()), ("row", pa.int64()),
                               ("detail", pa.string())])
MAX_ID_CHARS = 100  # longer ids are cut in details


def with_input_ids(shards: list[Shard]) -> list[Shard]:
    """The shards whose ids come from the input (generated ids are unique already)."""
    return [s for s in shards if s.has_id and s.rows]


def id_hashes(ids: pa.Array) -> np.ndarray:
    """xxh3-64 of each (non-null) id's UTF-8 bytes, as uint64 (as dedup.exact hashes)."""
    return text_hashes(ids).to_numpy()


def id_records(shard: Shard, id_column: str) -> pa.Table:
    """One record (hash, shard, row, id, line) per row of `shard` that has an input id."""
    ids = read_ids(shard, id_column)
    n = ids.num_rows
    return pa.table({HASH: pa.array(id_hashes(ids["id"]), pa.uint64()),
                     "shard": pa.array(np.full(n, shard.index, np.int32)),
                     "row": ids["row"], "id": ids["id"], "line": ids["line"]},
                    schema=RECORD_SCHEMA)


def colliding(records: pa.Table) -> pa.Table:
    """The records whose hash another record shares: the only candidates for a duplicate.

    Needs whole hash groups per call (a reduce by `HASH`)."""
    if not records.num_rows:
        return records
    _, inverse, counts = np.unique(records[HASH].to_numpy(), return_inverse=True,
                                   return_counts=True)
    return records.filter(pa.array(counts[inverse] > 1))


def attach_ids(candidates: pa.Table, ids: pa.Table) -> pa.Table:
    """`candidates` (one shard's) with the id and line of each, from `read_ids` output."""
    rows = ids["row"].to_numpy()
    at = np.searchsorted(rows, candidates["row"].to_numpy())  # read_ids lists rows in order
    take = pa.array(at, pa.int64())
    return (candidates.select([f.name for f in KEY_SCHEMA])
            .append_column("id", ids["id"].take(take))
            .append_column("line", ids["line"].take(take)))


def find_duplicates(records: pa.Table) -> pa.Table:
    """Every record whose id an earlier record (by shard, then row) has, with the first
    occurrence's location; sorted by (shard, row). Records with a shared hash but
    different ids are not duplicates."""
    candidates = colliding(records) if records.num_rows else records
    if not candidates.num_rows:
        return FOUND_SCHEMA.empty_table()
    if "line" not in candidates.column_names:
        candidates = candidates.append_column("line", pa.nulls(candidates.num_rows, pa.int64()))
    ranked = candidates.sort_by([("id", "ascending"), ("shard", "ascending"),
                                 ("row", "ascending")])
    ids = ranked["id"].combine_chunks()
    n = len(ids)
    starts = np.ones(n, bool)
    if n > 1:
        starts[1:] = pc.not_equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(
            zero_copy_only=False)
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    later = np.flatnonzero(~starts)
    if not later.size:
        return FOUND_SCHEMA.empty_table()
    lead = pa.array(first[later])
    found = pa.table({
        "shard": ranked["shard"].take(pa.array(later)), "row": ranked["row"].take(pa.array(later)),
        "line": ranked["line"].take(pa.array(later)), "id": ids.take(pa.array(later)),
        "first_shard": ranked["shard"].take(lead), "first_row": ranked["row"].take(lead),
        "first_line": ranked["line"].take(lead),
    }).cast(FOUND_SCHEMA)
    return found.sort_by([("shard", "ascending"), ("row", "ascending")])


def quarantine(found: pa.Table, shards: list[Shard]) -> pa.Table:
    """(shard, row, detail) for `read_shard`: "id 'x' already at a.parquet row 3" (JSONL
    adds the first occurrence's physical line). `read_shard` prefixes the row's own place."""
    if not found.num_rows:
        return QUARANTINE_SCHEMA.empty_table()
    labels = {s.index: s.label for s in shards}
    label_of = pa.array([labels.get(i, "?") for i in range(max(labels) + 1)], pa.string())
    ids = found["id"].combine_chunks()
    cut = pc.utf8_slice_codeunits(ids, 0, MAX_ID_CHARS)
    cut = pc.if_else(pc.greater(pc.utf8_length(ids), MAX_ID_CHARS),
                     pc.binary_join_element_wise(cut, "...", ""), cut)
    line = pc.binary_join_element_wise(" (line ", pc.cast(found["first_line"], pa.string()),
                                       ")", "")
    detail = pc.binary_join_element_wise(
        "id '", cut, "' already at ", pc.take(label_of, found["first_shard"]), " row ",
        pc.cast(found["first_row"], pa.string()), pc.fill_null(line, ""), "")
    return pa.table({"shard": found["shard"], "row": found["row"], "detail": detail},
                    schema=QUARANTINE_SCHEMA)


def duplicates_in_process(shards: list[Shard], id_column: str) -> pa.Table:
    """The `quarantine` table for `shards`, computed here (no Ray): for `inprocess`."""
    with_ids = with_input_ids(shards)
    if not with_ids:
        return QUARANTINE_SCHEMA.empty_table()
    records = pa.concat_tables([id_records(s, id_column) for s in with_ids])
    return quarantine(find_duplicates(records), shards)
