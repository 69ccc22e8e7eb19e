"""Reading one input shard as Arrow batches, quarantining rows that cannot be used.

A row that cannot be curated (null or non-string text, invalid JSON or UTF-8, a
document over `max_doc_bytes`, a null id) is not skipped: it travels on as dropped at
step 0 with a reason and a detail naming the file and row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines.errors import InputError
from pipelines.shards import Shard

_NULL = pa.scalar(None, pa.string())


def read_shard(shard: Shard, text_column: str, id_column: str, max_doc_bytes: int,
               batch_rows: int) -> Iterator[pa.Table]:
    """Yield the shard as batches carrying the bookkeeping columns of `pipelines.columns`."""
    reader = _parquet_batches if shard.format == "parquet" else _jsonl_batches
    row = 0
    for table, reasons, details in reader(shard, text_column, batch_rows):
        yield _prepare(table, reasons, details, shard, row, text_column, id_column, max_doc_bytes)
        row += table.num_rows
    if row != shard.rows:
        raise InputError(f"{shard.path}: read {row} rows but the shard declares {shard.rows}; "
                         "was it modified during the run?")


Batch = tuple[pa.Table, list[str | None], list[str | None]]


def _parquet_batches(shard: Shard, text_column: str, batch_rows: int) -> Iterator[Batch]:
    try:
        pf = pq.ParquetFile(shard.path)
        for rb in pf.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([rb])
            yield table, [None] * table.num_rows, [None] * table.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{shard.path}: Parquet data cannot be decoded ({exc})") from None


def _jsonl_batches(shard: Shard, text_column: str, batch_rows: int) -> Iterator[Batch]:
    rows: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    details: list[str | None] = []
    with open(shard.path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            record, reason, detail = _parse_line(raw, lineno, text_column)
            rows.append(record)
            reasons.append(reason)
            details.append(detail)
            if len(rows) == batch_rows:
                yield _columnar(rows), reasons, details
                rows, reasons, details = [], [], []
    if rows:
        yield _columnar(rows), reasons, details


def _parse_line(raw: bytes, lineno: int, text_column: str
                ) -> tuple[dict[str, Any], str | None, str | None]:
    where = f"line {lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {}, "invalid_utf8", f"{where}: byte {exc.start} is not UTF-8"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return {}, "invalid_json", f"{where}: {exc.msg} at column {exc.colno}"
    if not isinstance(record, dict):
        return {}, "not_an_object", f"{where}: a JSON {type(record).__name__}, not an object"
    text = record.get(text_column)
    if text is not None and not isinstance(text, str):
        record[text_column] = None
        return record, "non_string_text", f"{where}: text is a JSON {type(text).__name__}"
    return record, None, None


def _columnar(rows: list[dict[str, Any]]) -> pa.Table:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    cols = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        try:
            cols[k] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed JSON types in one key: keep every value, as its JSON text.
            cols[k] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    return pa.table(cols) if cols else pa.table({"_empty": pa.nulls(len(rows))}).drop(["_empty"])


def _prepare(table: pa.Table, reasons: list, details: list, shard: Shard, first_row: int,
             text_column: str, id_column: str, max_doc_bytes: int) -> pa.Table:
    n = table.num_rows
    rows = np.arange(first_row, first_row + n)
    generated = pa.array([f"{shard.label}:{r}" for r in rows.tolist()], pa.string())
    if id_column not in table.column_names:
        table = table.append_column(id_column, generated)
    if text_column not in table.column_names:
        table = table.append_column(text_column, pa.nulls(n, pa.string()))
    text = table[text_column].combine_chunks()
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        text = pa.nulls(n, pa.string())
    ids = table[id_column].combine_chunks()
    if ids.null_count:
        table = _set(table, id_column, pc.coalesce(ids, pc.cast(generated, ids.type))
                     if pa.types.is_string(ids.type) else ids)

    reason = pa.array(reasons, pa.string())
    detail = pa.array(details, pa.string())
    checks = [
        (pc.is_null(ids), "null_id", pa.scalar("id is null")),
        (pc.is_null(text), "null_text", pa.scalar("text is null")),
        (pc.greater(pc.binary_length(text), max_doc_bytes), "too_large",
         pc.binary_join_element_wise(pc.cast(pc.binary_length(text), pa.string()),
                                     f" bytes > max_doc_bytes={max_doc_bytes}", "")),
        (_invalid_utf8(text), "invalid_utf8", pa.scalar("text is not valid UTF-8")),
    ]
    for failed, code, why in checks:
        failed = pc.and_(pc.fill_null(failed, False), pc.is_null(reason))
        reason = pc.if_else(failed, code, reason)
        detail = pc.if_else(failed, why, detail)
    where = pa.array([f"{shard.label} row {r}: " for r in rows.tolist()], pa.string())
    detail = pc.binary_join_element_wise(where, detail, "")
    dropped = pc.is_valid(reason)
    table = _set(table, text_column, pc.if_else(dropped, pa.scalar(None, text.type), text))
    return (table
            .append_column(C.ORDER, C.order_values(shard.index, first_row, n))
            .append_column(C.SHARD, pa.array(np.full(n, shard.index, np.int32)))
            .append_column(C.DROP_STEP, pc.if_else(dropped, pa.scalar(0, pa.int16()),
                                                   pa.scalar(None, pa.int16())))
            .append_column(C.REASON, reason)
            .append_column(C.DETAIL, pc.if_else(dropped, detail, _NULL)))


def _invalid_utf8(text: pa.Array) -> pa.Array:
    """Per-row flag of invalid UTF-8, which Parquet readers do not check."""
    try:
        text.validate(full=True)
        return pa.array(np.zeros(len(text), bool))
    except pa.ArrowInvalid:
        flags = []
        for v in pc.cast(text, pa.binary()).to_pylist():
            try:
                flags.append(v is not None and v.decode("utf-8") is None)
            except UnicodeDecodeError:
                flags.append(True)
        return pa.array(flags)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)
