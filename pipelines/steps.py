"""Applying one operator function to a carried batch, with the bookkeeping around it.

The wrapper hands the operator only the live rows, checks the result is row-aligned
(an operator cannot lose or invent rows), marks dropped rows, adds signal columns
and the CPU seconds spent, and returns every row it was given.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import BatchResult, Operator
from pipelines import columns as C
from pipelines import progress
from pipelines.errors import AccountingError

_KINDS = {"num": pa.float64(), "text": pa.string()}


def apply_step(batch: pa.Table, fn: Callable[[pa.Table], BatchResult], op: Operator,
               step: int, last_stage: bool, stage: str = "") -> pa.Table:
    """Run `fn` on the live rows of `batch` as step `step` (its stage `stage`, if a
    global operator's); return all rows. The batch is reported to `pipelines.progress`."""
    began = time.time()
    # CPU time of this process (all its threads, e.g. torch's), not wall: a busy machine
    # must not inflate ops.seconds. One task or actor call runs per worker process.
    start = time.process_time()
    live_mask = pc.is_null(batch[C.DROP_STEP])
    live = batch.filter(live_mask)
    dead = batch.filter(pc.invert(live_mask))
    result = fn(live)
    _check_aligned(result, live, op, step)

    out = result.table
    kept = result.kept_mask
    dropped = pc.invert(kept)
    # A dropped row keeps its text: the writer stores it in `removed` and counts its tokens.
    out = _set(out, C.DROP_STEP, pc.if_else(dropped, pa.scalar(step, pa.int16()),
                                            out[C.DROP_STEP]))
    out = _set(out, C.REASON, pc.if_else(dropped, result.reason, out[C.REASON]))
    out = _set(out, C.DETAIL, pc.if_else(dropped, result.detail, out[C.DETAIL]))
    for key, values in result.signals.items():
        kind = op.signal_keys.get(key)
        if kind is None:
            raise TypeError(f"{op.name} emitted signal '{key}' it does not declare in signal_keys")
        name = C.signal_column(step, key)
        if name in out.column_names:  # a later stage of a global op refines a signal
            out = _set(out, name, pc.cast(values, _KINDS[kind]))
        else:
            out = out.append_column(name, pc.cast(values, _KINDS[kind]))
    if last_stage:
        out = out.drop_columns([c for c in out.column_names if C.is_temporary(c)])

    seconds = time.process_time() - start
    # Rows out only from the step's last stage: earlier stages' kept rows are not the
    # step's output yet.
    kept_rows = result.reason.null_count if last_stage else None
    progress.report(step, stage, live.num_rows, kept_rows, began, time.time())
    tcol = C.seconds_column(step)
    per_row = seconds / max(live.num_rows, 1)
    if tcol in out.column_names:
        out = _set(out, tcol, pc.add(out[tcol], per_row))
    else:
        out = out.append_column(tcol, pa.array(np.full(out.num_rows, per_row)))
    return _concat(out, dead)


def _check_aligned(result: BatchResult, live: pa.Table, op: Operator, step: int) -> None:
    got = result.table
    if got.num_rows != live.num_rows or not got[C.ORDER].equals(live[C.ORDER]):
        raise AccountingError(
            f"step {step} ({op.name}) returned {got.num_rows} rows for {live.num_rows} "
            "(or reordered them); operators must return every input row, in order"
        )


def _concat(live: pa.Table, dead: pa.Table) -> pa.Table:
    """Live rows then dead rows, with dead rows given nulls for new columns."""
    if dead.num_rows == 0:
        return live
    for field in live.schema:
        if field.name not in dead.column_names:
            dead = dead.append_column(field, pa.nulls(dead.num_rows, field.type))
    dead = dead.select(live.column_names).cast(live.schema)  # drops dead rows' temp columns
    return pa.concat_tables([live, dead])


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)
